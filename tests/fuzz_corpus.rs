//! Replays the committed fuzz corpus (fuzz/corpus/<target>/*) through the same library
//! functions the cargo-fuzz targets call (fuzz/fuzz_targets/*.rs), on stable, in plain
//! `cargo test`: every input the fuzzer found interesting (and every crash it found,
//! kept as a regression input) must still run without a panic or a stack overflow.
//!
//! Each input runs on a thread with a tokio worker's default stack (2 MiB), because
//! that is where the daemon runs these functions.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("imap_command", zolder::imapd::proto::fuzz_command),
    ("mime_walk", zolder::imapd::proto::mime::fuzz_walk),
    ("smtp_session", zolder::submit::proto::fuzz_session),
    ("pop3_command", zolder::pop3d::proto::fuzz_command),
    ("fetchmailrc", zolder::config::fetchmailrc::fuzz_parse),
    ("sieve_input", zolder::deliver::sieve::fuzz_input),
];

#[test]
fn every_corpus_file_replays_without_a_crash() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for &(name, f) in TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: empty corpus", dir.display());
        for p in files {
            let data = std::fs::read(&p).unwrap();
            let shown = p.display().to_string();
            std::thread::Builder::new()
                .stack_size(2 * 1024 * 1024)
                .spawn(move || f(&data))
                .unwrap()
                .join()
                .unwrap_or_else(|_| panic!("{shown} crashed its target {name}"));
        }
    }
}
