//! queue (to be built).
