//! Network plumbing shared by imapd, pop3d and submit: the accept loop with its
//! limits and shutdown ([`listener`]), a stream that is plain or TLS and can be
//! upgraded by STARTTLS ([`stream`]), and the LAN certificate ([`tls`]).
//!
//! # Security
//! Every byte that arrives here is untrusted. The listener bounds connections in
//! total and per client address; protocol modules bound line and literal sizes.

pub mod dns;
pub mod listener;
pub mod stream;
pub mod tls;

pub use listener::{Listener, ListenerLimits};
pub use stream::Stream;
