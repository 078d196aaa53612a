//! spool (to be built).
