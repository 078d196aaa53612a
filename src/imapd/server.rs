//! The IMAP listeners: `[listen] imap` (plain, with STARTTLS) and `[listen] imaps`
//! (implicit TLS). Binds them, then runs one [`Session`] per connection inside the
//! connection's span.
//!
//! # Security
//! Accepts connections from anywhere the config lets it listen; the accept loop
//! (`net::Listener`) bounds connections in total and per address. TLS uses the LAN
//! certificate from `net::tls`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, warn};

use super::backend::Backend;
use super::session::Session;
use crate::auth::FailureDelays;
use crate::config::Config;
use crate::net::{Listener, ListenerLimits, Stream};

/// What every session of this server shares.
pub struct Shared {
    pub config: Arc<Config>,
    pub backend: Arc<dyn Backend>,
    pub tls: Option<async_native_tls::TlsAcceptor>,
    /// Shared with POP3 and SMTP AUTH ([`FailureDelays::shared`]).
    pub delays: Arc<FailureDelays>,
    pub shutdown: CancellationToken,
}

impl Shared {
    /// The largest literal accepted: a message of the configured maximum size.
    pub fn max_literal(&self) -> usize {
        self.config.limits.message_size.min(usize::MAX as u64) as usize
    }
}

/// Binds the configured IMAP listeners and spawns their accept loops on `tasks`.
/// Returns the bound addresses as ("imap" | "imaps", addrs).
pub async fn start(
    config: Arc<Config>,
    backend: Arc<dyn Backend>,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
    lan_tls: Result<async_native_tls::TlsAcceptor, String>,
) -> anyhow::Result<Vec<(&'static str, Vec<SocketAddr>)>> {
    let plain = config.listen.imap.list();
    let implicit = config.listen.imaps.list();
    if plain.is_empty() && implicit.is_empty() {
        return Ok(vec![]);
    }
    let tls = match lan_tls {
        Ok(t) => Some(t),
        Err(e) if implicit.is_empty() => {
            warn!(error = %e, "imapd: no TLS certificate; STARTTLS not offered");
            None
        }
        Err(e) => anyhow::bail!("imaps: {e}"),
    };
    let limits = ListenerLimits::from_config(&config, true);
    let shared = Arc::new(Shared {
        config: config.clone(),
        backend,
        tls,
        delays: FailureDelays::shared(&config),
        shutdown: shutdown.clone(),
    });
    let mut out = Vec::new();
    for (name, addrs, implicit_tls) in [("imap", plain, false), ("imaps", implicit, true)] {
        let mut bound = Vec::new();
        for a in addrs {
            let l = Listener::bind(name, &a).await?;
            bound.push(l.local_addr());
            let shared = shared.clone();
            let sd = shutdown.clone();
            tasks.spawn(l.run(limits.clone(), sd, move |sock, peer| {
                let shared = shared.clone();
                async move {
                    let stream = if implicit_tls {
                        let Some(acc) = shared.tls.clone() else {
                            return;
                        };
                        match Stream::Plain(sock).accept_tls(&acc).await {
                            Ok(s) => s,
                            Err(e) => {
                                info!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                        }
                    } else {
                        Stream::Plain(sock)
                    };
                    // The listener's span names service and peer; this one adds who
                    // logged in and what they selected, once known.
                    let span = tracing::info_span!(
                        "imap",
                        tls = stream.is_tls(),
                        user = tracing::field::Empty,
                        mailbox = tracing::field::Empty
                    );
                    Session::new(stream, peer, shared)
                        .run()
                        .instrument(span)
                        .await;
                }
            }));
        }
        if !bound.is_empty() {
            out.push((name, bound));
        }
    }
    Ok(out)
}
