//! One file per command, each an `impl Session` block with the command's handler
//! (`op_<command>`), as RFC 3501 and the extensions define it. Handlers write untagged
//! data into the session's output buffer and return the tagged [`Reply`]
//! (`super::session::Reply`); the session adds other sessions' updates before it.

mod append;
mod authenticate;
mod binary;
mod capability;
mod catenate;
mod close;
mod compress;
mod copy;
mod create;
mod delete;
mod enable;
mod expunge;
mod fetch;
mod id;
mod idle;
mod list;
mod login;
mod namespace;
mod quota;
mod rename;
pub(crate) mod search;
mod select;
mod sort;
mod starttls;
mod status;
mod store;
mod subscribe;
mod thread;

pub use login::check_password;
