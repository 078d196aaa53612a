//! fetch (to be built).
