//! The fetchmailrc parser: fetchmail 6.4's grammar → zolder accounts plus warnings.
//! Pure: no I/O beyond what the caller hands in.
