//! The SMTP listeners: one per address under `[listen] submission` and `smtp`, each
//! running [`session::run`] per connection inside the shared accept loop
//! (`net::Listener`: connection limits, per-address limits, shutdown).

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use super::session::{self, Io, Peer, Shared};
use crate::net::{Listener, ListenerLimits, Stream};

/// Binds every configured SMTP address. Returns (service, listener) pairs.
pub async fn bind(cfg: &crate::config::Config) -> std::io::Result<Vec<(&'static str, Listener)>> {
    let mut out = Vec::new();
    for (service, list) in [
        ("submission", &cfg.listen.submission),
        ("smtp", &cfg.listen.smtp),
    ] {
        for a in list.list() {
            out.push((service, Listener::bind(service, &a).await?));
        }
    }
    Ok(out)
}

/// Serves one listener until `shutdown`.
pub async fn serve(
    service: &'static str,
    l: Listener,
    shared: Shared,
    shutdown: CancellationToken,
) {
    let limits = ListenerLimits::from_config(&shared.cfg, false);
    l.run(limits.clone(), shutdown, move |sock, peer: SocketAddr| {
        let shared = shared.clone();
        async move {
            session::run(
                shared,
                Io::Net(Stream::Plain(sock)),
                Peer {
                    addr: peer,
                    service,
                    local_user: None,
                },
            )
            .await
        }
    })
    .await
}
