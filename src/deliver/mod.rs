//! deliver (to be built).
