//! The ManageSieve listeners (`[listen] managesieve`): one session per connection,
//! through the shared accept loop (connection limits, shutdown).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::scripts::Scripts;
use super::session::{self, Shared};
use crate::config::Config;
use crate::net::{Listener, ListenerLimits, Stream};

/// Binds every `[listen] managesieve` address and serves it on `tasks`.
pub async fn start(
    cfg: Arc<Config>,
    tls: Result<async_native_tls::TlsAcceptor, String>,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
    addrs: &mut BTreeMap<&'static str, Vec<SocketAddr>>,
) -> std::io::Result<()> {
    let list = cfg.listen.managesieve.list();
    if list.is_empty() {
        return Ok(());
    }
    let tls = match tls {
        Ok(t) => Some(t),
        Err(e) => {
            warn!(error = %e, "managesieve: no TLS certificate; STARTTLS not offered");
            None
        }
    };
    let shared = Shared {
        scripts: Scripts::from_config(&cfg),
        cfg: cfg.clone(),
        tls,
        delays: crate::auth::FailureDelays::shared(&cfg),
    };
    let limits = ListenerLimits::from_config(&cfg, true);
    for a in list {
        let l = Listener::bind("managesieve", &a).await?;
        addrs.entry("managesieve").or_default().push(l.local_addr());
        let shared = shared.clone();
        let sd = shutdown.clone();
        tasks.spawn(l.run(limits.clone(), shutdown.clone(), move |sock, peer| {
            let shared = shared.clone();
            let sd = sd.clone();
            async move {
                tokio::select! {
                    _ = session::run(shared, Stream::Plain(sock), peer) => {}
                    _ = sd.cancelled() => {}
                }
            }
        }));
    }
    Ok(())
}
