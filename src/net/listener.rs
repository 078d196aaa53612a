//! The accept loop: a semaphore bounds connections, a per-address count bounds any
//! one client, accept errors back off instead of spinning, and shutdown stops
//! accepting then waits for every handler (mini-redis' server.rs pattern).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub max_per_ip: usize,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: 512,
            max_per_ip: 64,
        }
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
            let fut = handler(sock, peer);
            let per_ip = per_ip.clone();
            let span = info_span!("conn", service = self.name, %peer);
            tracker.spawn(
                async move {
                    fut.await;
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
