//! The POP3 listeners: `[listen] pop3` (plain, STLS offered) and `pop3s` (implicit TLS).
//! Binds every address first, then runs one accept loop per address on the daemon's
//! task tracker; on shutdown, open sessions are dropped between commands (nothing is
//! deleted, since deletion happens only at QUIT).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::session::{self, MaildropStore, Shared};
use crate::config::Config;
use crate::net::{Listener, ListenerLimits, Stream};

/// Binds and starts the configured POP3 listeners; records their addresses under
/// "pop3" and "pop3s". Takes what it serves explicitly (the daemon builds it), so pop3d
/// does not depend on the composition root; `shutdown` stops the accept loops and drops
/// open sessions.
pub async fn start(
    config: Arc<Config>,
    shutdown: CancellationToken,
    store: Arc<dyn MaildropStore>,
    tasks: &TaskTracker,
    addrs: &mut BTreeMap<&'static str, Vec<SocketAddr>>,
    lan_tls: Result<async_native_tls::TlsAcceptor, String>,
) -> std::io::Result<()> {
    let cfg = &config;
    let plain = cfg.listen.pop3.list();
    let implicit = cfg.listen.pop3s.list();
    if plain.is_empty() && implicit.is_empty() {
        return Ok(());
    }
    let tls = match lan_tls {
        Ok(t) => Some(t),
        Err(e) if implicit.is_empty() => {
            warn!(error = %e, "pop3: no TLS certificate; STLS not offered");
            None
        }
        Err(e) => return Err(std::io::Error::other(format!("pop3s: {e}"))),
    };
    let shared = Arc::new(Shared {
        config: cfg.clone(),
        store,
        tls,
        delays: crate::auth::FailureDelays::shared(cfg),
    });
    let limits = ListenerLimits::from_config(cfg, true);
    for (name, list, implicit_tls) in [("pop3", plain, false), ("pop3s", implicit, true)] {
        for a in list {
            let l = Listener::bind(name, &a).await?;
            addrs.entry(name).or_default().push(l.local_addr());
            let shared = shared.clone();
            let stop = shutdown.clone();
            tasks.spawn(l.run(limits.clone(), shutdown.clone(), move |sock, peer| {
                let shared = shared.clone();
                let stop = stop.clone();
                async move {
                    let mut stream = Stream::Plain(sock);
                    if implicit_tls {
                        let acc = shared.tls.clone().expect("pop3s has a certificate");
                        stream = match stream.accept_tls(&acc).await {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                        };
                    }
                    tokio::select! {
                        _ = session::run(shared, stream, peer) => {}
                        _ = stop.cancelled() => {}
                    }
                }
            }));
        }
    }
    Ok(())
}
