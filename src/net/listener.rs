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

impl Listener {
    /// Binds `addr` ("127.0.0.1:0" picks a free port; see [`Listener::local_addr`]).
    pub async fn bind(name: &'static str, addr: &str) -> std::io::Result<Listener> {
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
