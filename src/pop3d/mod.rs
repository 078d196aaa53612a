//! pop3d (to be built).
