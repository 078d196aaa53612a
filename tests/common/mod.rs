//! Test helpers shared by the integration tests, one module per kind of peer:
//! `peers` (finding programs and free ports, the recording smarthost, clamd), `isp`
//! (the Dovecot "ISP"), `daemon` (zolder itself in-process on port 0), `maildir` (a
//! durable Maildir `Deliver` and a config builder for the fetch tests) and `outgoing`
//! (the fake smarthost, recording local pipeline and SMTP client of the outgoing tests).
//!
//! Each test crate (`mod common;`) uses a different part of this, and rustc warns about
//! what a crate leaves unused; that is expected here, so dead code (and unused
//! re-exports below) is allowed.
#![allow(dead_code)]

pub mod daemon;
pub mod isp;
pub mod maildir;
pub mod outgoing;
pub mod peers;

#[allow(unused_imports)]
pub use daemon::{Server, Zolder};
#[allow(unused_imports)]
pub use isp::Isp;
#[allow(unused_imports)]
pub use maildir::{MaildirDeliver, config};
#[allow(unused_imports)]
pub use peers::{ClamdServer, Smarthost, free_port, have, interop_dir};
