//! relay (to be built).
