//! submit (to be built).
