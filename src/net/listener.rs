//! The accept loop: a semaphore bounds connections, a per-address count bounds any
//! one client, accept errors back off instead of spinning, and shutdown stops
//! accepting then waits for every handler (mini-redis' server.rs pattern).
//!
//! # Security
//! Strangers can open connections and never log in. Connections from outside
//! `lan_networks` count against a smaller pre-login budget
//! (`limits.max_preauth_connections`) until their session calls [`authenticated`];
//! when that budget is full the oldest such connection is closed to make room, and
//! each has `limits.login_timeout` to log in (10 s for an address whose earlier
//! connections timed out). So a flood of idle connections cannot fill
//! `max_connections`: logged-in and LAN clients are always served.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

#[derive(Debug, Clone)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub max_per_ip: usize,
    /// Connections off the LAN that have not logged in.
    pub max_preauth: usize,
    /// Time to log in; `None` = no limit (the session's own timeouts apply).
    pub login_timeout: Option<Duration>,
    /// Clients here are trusted from the start (not counted as pre-login).
    pub lan: Vec<ipnet::IpNet>,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: 512,
            max_per_ip: 64,
            max_preauth: 32,
            login_timeout: None,
            lan: Vec::new(),
        }
    }
}

impl ListenerLimits {
    /// The `[limits]` of `cfg`, with a login timeout when `login` (IMAP, POP3).
    pub fn from_config(cfg: &crate::config::Config, login: bool) -> ListenerLimits {
        ListenerLimits {
            max_connections: cfg.limits.max_connections,
            max_per_ip: cfg.limits.max_connections_per_ip,
            max_preauth: cfg.limits.max_preauth_connections.max(1),
            login_timeout: login.then(|| Duration::from_secs(cfg.limits.login_timeout.max(1))),
            lan: cfg.lan_networks.clone(),
        }
    }

    fn in_lan(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.lan.iter().any(|n| n.contains(&ip))
    }
}

/// Login timeout for an address whose connections timed out before login.
const OFFENDER_LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an address stays an offender.
const OFFENDER_MEMORY: Duration = Duration::from_secs(900);

/// One connection as the listener tracks it (see [`authenticated`]).
#[derive(Clone)]
struct Conn {
    id: u64,
    close: CancellationToken,
    authed: Arc<AtomicBool>,
}

tokio::task_local! {
    static CURRENT: Conn;
}

/// Tells the listener that the connection served by the current task has logged
/// in: it leaves the pre-login budget and the login timeout. Sessions call it on a
/// successful LOGIN/AUTHENTICATE/USER+PASS/AUTH (and SMTP on an accepted RCPT);
/// outside a listener's task it does nothing.
pub fn authenticated() {
    let _ = CURRENT.try_with(|c| c.authed.store(true, Ordering::SeqCst));
}

/// The pre-login connections of one listener, oldest first.
#[derive(Default)]
struct PreAuth {
    conns: std::collections::VecDeque<Conn>,
    offenders: HashMap<IpAddr, Instant>,
}

impl PreAuth {
    /// Forgets connections that logged in or ended.
    fn prune(&mut self) {
        self.conns
            .retain(|c| !c.authed.load(Ordering::SeqCst) && !c.close.is_cancelled());
    }
}

/// A bound socket for one service.
pub struct Listener {
    pub name: &'static str,
    pub inner: TcpListener,
}

/// Sockets bound before the daemon gave up root (and kept across SIGHUP reloads),
/// by service name (the `[listen]` key) and the address string the config names. [`Listener::bind`] takes a duplicate of a
/// socket found here instead of binding again, so a reload neither loses queued
/// connections nor needs the privilege to bind port 143 a second time.
static PREBOUND: Mutex<Option<HashMap<(String, String), std::net::TcpListener>>> = Mutex::new(None);

/// Binds each (service, address) of `addrs` not bound yet and keeps it in the
/// process-wide set [`Listener::bind`] draws from. On an error the ones bound so far
/// stay kept.
pub fn prebind(addrs: &[(&'static str, String)]) -> std::io::Result<()> {
    let mut g = PREBOUND.lock().unwrap_or_else(|e| e.into_inner());
    let map = g.get_or_insert_with(HashMap::new);
    for (name, a) in addrs {
        let key = (name.to_string(), a.clone());
        if map.contains_key(&key) {
            continue;
        }
        let l = std::net::TcpListener::bind(a.as_str()).map_err(|e| {
            std::io::Error::new(e.kind(), format!("{name}: cannot listen on {a}: {e}"))
        })?;
        l.set_nonblocking(true)?;
        map.insert(key, l);
    }
    Ok(())
}

/// Closes the kept sockets whose (service, address) is not in `addrs` (listeners
/// removed from the config, once the services using them have stopped).
pub fn release_except(addrs: &[(&'static str, String)]) {
    let mut g = PREBOUND.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(map) = g.as_mut() {
        map.retain(|(n, a), _| addrs.iter().any(|(m, x)| m == n && x == a));
    }
}

/// The address the kept socket of `name` for `addr` is bound to (the port of ":0").
pub fn prebound_addr(name: &str, addr: &str) -> Option<SocketAddr> {
    let g = PREBOUND.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref()?
        .get(&(name.to_string(), addr.to_string()))?
        .local_addr()
        .ok()
}

impl Listener {
    /// Binds `addr` ("127.0.0.1:0" picks a free port; see [`Listener::local_addr`]),
    /// or takes a duplicate of the socket [`prebind`] keeps for it.
    pub async fn bind(name: &'static str, addr: &str) -> std::io::Result<Listener> {
        let kept = {
            let g = PREBOUND.lock().unwrap_or_else(|e| e.into_inner());
            g.as_ref()
                .and_then(|m| m.get(&(name.to_string(), addr.to_string())))
                .map(|l| l.try_clone())
                .transpose()?
        };
        if let Some(l) = kept {
            return Ok(Listener {
                name,
                inner: TcpListener::from_std(l)?,
            });
        }
        let inner = TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("{name}: cannot listen on {addr}: {e}"))
        })?;
        Ok(Listener { name, inner })
    }

    /// The bound socket itself, for a server with its own accept loop (the web
    /// server: axum accepts). Taken through [`Listener::bind`] so that a socket kept
    /// across a reload or bound before the privilege drop is reused.
    pub fn into_tokio(self) -> TcpListener {
        self.inner
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner
            .local_addr()
            .expect("bound socket has an address")
    }

    /// Accepts until `shutdown` is cancelled, running `handler` per connection; then
    /// waits for every handler to finish (handlers watch `shutdown` themselves).
    pub async fn run<H, F>(self, limits: ListenerLimits, shutdown: CancellationToken, handler: H)
    where
        H: Fn(TcpStream, SocketAddr) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let sem = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
        let preauth: Arc<Mutex<PreAuth>> = Arc::default();
        let next_id = AtomicU64::new(0);
        let tracker = TaskTracker::new();
        let local = self.local_addr();
        info!(service = self.name, %local, "listening");
        let mut backoff = Duration::from_millis(10);
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let (sock, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.inner.accept() => match r {
                    Ok(x) => { backoff = Duration::from_millis(10); x }
                    Err(e) => {
                        // EMFILE and friends: wait instead of spinning.
                        warn!(service = self.name, error = %e, "accept failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                },
            };
            {
                let mut m = per_ip.lock().unwrap_or_else(|e| e.into_inner());
                let n = m.entry(peer.ip()).or_insert(0);
                if *n >= limits.max_per_ip {
                    warn!(service = self.name, %peer, "too many connections from this address");
                    continue;
                }
                *n += 1;
            }
            let _ = sock.set_nodelay(true);
            let lan = limits.in_lan(peer.ip());
            let conn = Conn {
                id: next_id.fetch_add(1, Ordering::Relaxed),
                close: CancellationToken::new(),
                authed: Arc::new(AtomicBool::new(lan)),
            };
            let mut timeout = limits.login_timeout;
            if !lan {
                let mut p = preauth.lock().unwrap_or_else(|e| e.into_inner());
                p.prune();
                if p.conns.len() >= limits.max_preauth
                    && let Some(old) = p.conns.pop_front()
                {
                    info!(service = self.name, %peer, "pre-login budget full: closing the oldest connection that has not logged in");
                    old.close.cancel();
                }
                p.conns.push_back(conn.clone());
                let now = Instant::now();
                p.offenders
                    .retain(|_, t| now.duration_since(*t) < OFFENDER_MEMORY);
                if p.offenders.contains_key(&peer.ip()) {
                    timeout = timeout.map(|t| t.min(OFFENDER_LOGIN_TIMEOUT));
                }
            }
            let fut = CURRENT.scope(conn.clone(), handler(sock, peer));
            let per_ip = per_ip.clone();
            let preauth = preauth.clone();
            let span = info_span!("conn", service = self.name, %peer);
            tracker.spawn(
                async move {
                    let authed = conn.authed.clone();
                    let login_deadline = async move {
                        match timeout {
                            Some(t) => {
                                tokio::time::sleep(t).await;
                                if authed.load(Ordering::SeqCst) {
                                    std::future::pending::<()>().await;
                                }
                            }
                            None => std::future::pending::<()>().await,
                        }
                    };
                    tokio::select! {
                        _ = fut => {}
                        _ = conn.close.cancelled() => {}
                        _ = login_deadline => {
                            info!("no login in time: connection closed");
                            let mut p = preauth.lock().unwrap_or_else(|e| e.into_inner());
                            p.offenders.insert(peer.ip(), Instant::now());
                        }
                    }
                    conn.close.cancel();
                    {
                        let mut p = preauth.lock().unwrap_or_else(|e| e.into_inner());
                        p.conns.retain(|c| c.id != conn.id);
                    }
                    drop(permit);
                    let mut m = per_ip.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(n) = m.get_mut(&peer.ip()) {
                        *n -= 1;
                        if *n == 0 {
                            m.remove(&peer.ip());
                        }
                    }
                }
                .instrument(span),
            );
        }
        tracker.close();
        tracker.wait().await;
        info!(service = self.name, "stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Echo-ish server: says hello, then "authenticates" on the line `login`.
    async fn start(limits: ListenerLimits) -> (SocketAddr, CancellationToken) {
        let l = Listener::bind("test", "127.0.0.1:0").await.unwrap();
        let addr = l.local_addr();
        let sd = CancellationToken::new();
        tokio::spawn(l.run(limits, sd.clone(), |mut sock, _| async move {
            let _ = sock.write_all(b"hello\n").await;
            let mut buf = [0u8; 64];
            loop {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if buf[..n].starts_with(b"login") {
                            authenticated();
                        }
                        let _ = sock.write_all(b"ok\n").await;
                    }
                }
            }
        }));
        (addr, sd)
    }

    async fn connect(addr: SocketAddr, from: &str) -> TcpStream {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let mut c = s.connect(addr).await.unwrap();
        let mut b = [0u8; 6];
        c.read_exact(&mut b).await.unwrap();
        c
    }

    async fn is_open(c: &mut TcpStream) -> bool {
        if c.write_all(b"ping").await.is_err() {
            return false;
        }
        let mut b = [0u8; 3];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), c.read(&mut b)).await,
            Ok(Ok(n)) if n > 0
        )
    }

    #[tokio::test]
    async fn pre_login_budget_evicts_the_oldest_and_spares_logged_in_and_lan() {
        let limits = ListenerLimits {
            max_connections: 8,
            max_per_ip: 64,
            max_preauth: 3,
            login_timeout: Some(Duration::from_secs(30)),
            lan: vec!["127.0.0.1/32".parse().unwrap()],
        };
        let (addr, sd) = start(limits).await;
        let mut member = connect(addr, "127.0.0.2").await;
        member.write_all(b"login").await.unwrap();
        let mut b = [0u8; 3];
        member.read_exact(&mut b).await.unwrap();
        let mut lan = connect(addr, "127.0.0.1").await;
        let mut flood = Vec::new();
        for _ in 0..20 {
            flood.push(connect(addr, "127.0.0.3").await);
        }
        // Never more than the budget open; the newest survive.
        let mut open = 0;
        for c in flood.iter_mut() {
            if is_open(c).await {
                open += 1;
            }
        }
        assert!(open <= 3, "{open} pre-login connections open");
        assert!(is_open(flood.last_mut().unwrap()).await);
        assert!(
            is_open(&mut member).await,
            "the logged-in client was closed"
        );
        assert!(is_open(&mut lan).await, "the LAN client was closed");
        // And a newcomer is still served although max_connections (8) < 22.
        let mut late = connect(addr, "127.0.0.4").await;
        assert!(is_open(&mut late).await);
        sd.cancel();
    }

    #[tokio::test]
    async fn login_timeout_closes_idle_pre_login_connections() {
        let limits = ListenerLimits {
            max_connections: 8,
            max_per_ip: 64,
            max_preauth: 8,
            login_timeout: Some(Duration::from_millis(300)),
            lan: vec![],
        };
        let (addr, sd) = start(limits).await;
        let mut idle = connect(addr, "127.0.0.5").await;
        let mut member = connect(addr, "127.0.0.6").await;
        member.write_all(b"login").await.unwrap();
        let mut b = [0u8; 3];
        member.read_exact(&mut b).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let mut rest = Vec::new();
        let _ = idle.read_to_end(&mut rest).await;
        assert!(is_open(&mut member).await);
        sd.cancel();
    }
}
