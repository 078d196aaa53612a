//! imapd (to be built).
