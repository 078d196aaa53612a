//! The local delivery pipeline (built by its issue): parse → trace headers → scan →
//! route → sieve → store.

pub mod scan;
