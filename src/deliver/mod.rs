//! The local delivery pipeline (built by its issue): parse → trace headers → scan →
//! route → sieve → store.

pub mod quarantine;
pub mod scan;
pub mod sieve;
