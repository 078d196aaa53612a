//! The web listeners: `[listen] web` (HTTP) and `webs` (HTTPS with the LAN
//! certificate), served by axum until the shutdown token fires.
//!
//! TLS handshakes run in their own tasks (bounded in time and number) so one slow
//! client never holds up the accept loop; finished handshakes are handed to axum
//! through a channel that implements [`axum::serve::Listener`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::{App, Conn, Services};

/// Handshakes in progress at once, and how long one may take.
const MAX_HANDSHAKES: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds every web listener, then serves each on `tasks`. Adds the bound addresses
/// under "web" and "webs".
pub async fn start(
    svc: Services,
    tasks: &TaskTracker,
    addrs: &mut BTreeMap<&'static str, Vec<SocketAddr>>,
) -> anyhow::Result<()> {
    let l = &svc.config.listen;
    let (plain, tls) = (l.web.list(), l.webs.list());
    if plain.is_empty() && tls.is_empty() {
        return Ok(());
    }
    let app = Arc::new(App::new(svc.clone()).map_err(|e| anyhow::anyhow!("web server: {e}"))?);
    spawn_expiry(app.clone(), tasks);
    for a in plain {
        let ln = crate::net::Listener::bind("web", &a)
            .await
            .map_err(|e| anyhow::anyhow!("[listen] web {a}: {e}"))?
            .into_tokio();
        let local = ln.local_addr()?;
        addrs.entry("web").or_default().push(local);
        let router = super::router(app.clone());
        let sd = svc.shutdown.clone();
        info!(addr = %local, "web listening");
        tasks.spawn(async move {
            let svc = router.into_make_service_with_connect_info::<Conn>();
            if let Err(e) = axum::serve(ln, svc)
                .with_graceful_shutdown(async move { sd.cancelled().await })
                .await
            {
                warn!(error = %e, "web listener ended");
            }
        });
    }
    if !tls.is_empty() {
        let acceptor = match &svc.tls {
            Ok(a) => a.clone(),
            Err(e) => anyhow::bail!("[listen] webs: no certificate: {e}"),
        };
        for a in tls {
            let ln = crate::net::Listener::bind("webs", &a)
                .await
                .map_err(|e| anyhow::anyhow!("[listen] webs {a}: {e}"))?
                .into_tokio();
            let local = ln.local_addr()?;
            addrs.entry("webs").or_default().push(local);
            let (tx, rx) = mpsc::channel(16);
            tasks.spawn(handshakes(ln, acceptor.clone(), tx, svc.shutdown.clone()));
            let router = super::router(app.clone());
            let sd = svc.shutdown.clone();
            info!(addr = %local, "webs listening");
            tasks.spawn(async move {
                let svc = router.into_make_service_with_connect_info::<Conn>();
                let ln = TlsListener { rx, local };
                if let Err(e) = axum::serve(ln, svc)
                    .with_graceful_shutdown(async move { sd.cancelled().await })
                    .await
                {
                    warn!(error = %e, "webs listener ended");
                }
            });
        }
    }
    Ok(())
}

/// Deletes idle sessions and samples the queue length every ten minutes.
fn spawn_expiry(app: Arc<App>, tasks: &TaskTracker) {
    let sd = app.svc.shutdown.clone();
    tasks.spawn(async move {
        loop {
            let idle = app.cfg().web.session_idle as i64;
            let since = super::now() - idle;
            // Also a reading of the queue length for the admin chart (the queue
            // runner adds one after each delivery attempt).
            let now = super::now();
            if let Err(e) = app
                .db(move |c| {
                    crate::db::web::expire_sessions(c, since)?;
                    let (_, waiting) = crate::db::queue::counts(c)?;
                    crate::db::web::gauge(c, "queue", waiting, now)
                })
                .await
            {
                warn!(error = ?e, "web: cannot expire sessions");
            }
            tokio::select! {
                _ = sd.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(600)) => {}
            }
        }
    });
}

type TlsStream = async_native_tls::TlsStream<TcpStream>;

/// Accepts TCP connections and runs their TLS handshakes, each in its own task.
async fn handshakes(
    ln: TcpListener,
    acceptor: async_native_tls::TlsAcceptor,
    tx: mpsc::Sender<(TlsStream, SocketAddr)>,
    sd: tokio_util::sync::CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let (sock, peer) = tokio::select! {
            _ = sd.cancelled() => return,
            r = ln.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    warn!(error = %e, "webs: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            // Too many handshakes in flight: this one is dropped.
            continue;
        };
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                Ok(Ok(s)) => {
                    let _ = tx.send((s, peer)).await;
                }
                Ok(Err(e)) => info!(%peer, error = %e, "webs: TLS handshake failed"),
                Err(_) => info!(%peer, "webs: TLS handshake timed out"),
            }
        });
    }
}

/// Finished TLS handshakes, as axum's listener.
struct TlsListener {
    rx: mpsc::Receiver<(TlsStream, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(v) => v,
            // The handshake task ended (shutdown): wait for the graceful shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for Conn {
    fn connect_info(s: IncomingStream<'_, TcpListener>) -> Conn {
        Conn {
            tls: false,
            peer: *s.remote_addr(),
        }
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Conn {
    fn connect_info(s: IncomingStream<'_, TlsListener>) -> Conn {
        Conn {
            tls: true,
            peer: *s.remote_addr(),
        }
    }
}
