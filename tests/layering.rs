//! Keeps ARCHITECTURE.md true: mail moves one way through zolder's modules, and a module
//! only calls the modules below it. This test reads every `src/**/*.rs` file, finds each
//! `crate::<module>` path outside comments, and fails when a module uses one that the table
//! in ARCHITECTURE.md ("Who may call whom") does not allow.
//!
//! When it fails: either move the shared piece down (usually into `message`, the shared
//! vocabulary) or, if the new arrow is right, change both the table below and
//! ARCHITECTURE.md in the same commit, saying why.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `module → modules it may use`. Anything not listed is forbidden. `daemon` (the
/// composition root), `service` (the process around it: reload, privilege drop) and
/// `cli` (the command line above them) may use everything.
/// An entry `"deliver::scan"` allows only that sub-module of `deliver`.
const ALLOWED: &[(&str, &[&str])] = &[
    ("message", &[]),
    ("config", &["message", "net::dns", "relay::dkim"]),
    ("db", &["message", "config"]),
    ("net", &["message", "config"]),
    ("auth", &["message", "config", "db"]),
    ("spool", &["message", "config", "db"]),
    (
        "deliver",
        &["message", "config", "db", "spool", "inbound::auth"],
    ),
    ("fetch", &["message", "config", "db", "net", "auth"]),
    (
        "imapd",
        &["message", "config", "db", "net", "auth", "spool"],
    ),
    (
        "pop3d",
        &["message", "config", "db", "net", "auth", "spool"],
    ),
    ("queue", &["message", "config", "db"]),
    (
        "relay",
        &["message", "config", "net", "auth", "fetch::oauth2"],
    ),
    (
        "submit",
        &[
            "message",
            "config",
            "db",
            "net",
            "auth",
            "queue",
            "deliver::scan",
            "inbound",
        ],
    ),
    ("status", &["message", "config", "db", "net"]),
    ("managesieve", &["message", "config", "db", "net", "auth"]),
    (
        "inbound",
        &[
            "message",
            "config",
            "db",
            "net",
            "submit::policy",
            "submit::proto",
        ],
    ),
    (
        "web",
        &[
            "message",
            "config",
            "db",
            "net",
            "auth",
            "spool",
            "imapd",
            "queue",
            "submit",
            "status",
            "deliver::quarantine",
            "deliver::scan",
            "managesieve::scripts",
        ],
    ),
];

/// Modules at the top: they compose the others.
const TOP: &[&str] = &["daemon", "service", "cli", "main", "lib"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `src/spool/store.rs` → `spool`,
/// `src/daemon.rs` → `daemon`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::a::b` path in the code of `text` (comments and string literals are
/// skipped well enough for this purpose: line comments and doc comments are dropped).
fn crate_paths(text: &str) -> Vec<(usize, String, Option<String>)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            // `$crate::` in macros and `my_crate::` are not ours.
            let before = rest[..i].chars().last();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            let ident = |s: &str| -> String {
                s.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect()
            };
            let first = ident(rest);
            let second = rest[first.len()..]
                .strip_prefix("::")
                .map(ident)
                .filter(|s| !s.is_empty());
            if !first.is_empty() {
                found.push((n + 1, first, second));
            }
        }
        // `use crate::{a, b::c}` groups.
        if let Some(i) = code.find("crate::{") {
            let group = &code[i + "crate::{".len()..];
            for item in group.split([',', '}']) {
                let item = item.trim();
                let mut parts = item.split("::");
                let first: String = parts
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let second = parts.next().map(|s| {
                    s.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<String>()
                });
                if !first.is_empty() {
                    found.push((n + 1, first, second));
                }
            }
        }
    }
    found
}

#[test]
fn lower_modules_never_import_higher_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let top_level: Vec<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut violations = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if TOP.contains(&module.as_str()) {
            continue;
        }
        let Some(may_use) = allowed.get(module.as_str()) else {
            violations.push(format!(
                "{}: module `{module}` is not in the layering table (tests/layering.rs, ARCHITECTURE.md)",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (line, used, sub) in crate_paths(&text) {
            if used == module || !top_level.contains(&used) {
                continue; // itself, or an item of lib.rs
            }
            let ok = may_use.iter().any(|rule| match rule.split_once("::") {
                Some((m, s)) => m == used && sub.as_deref() == Some(s),
                None => *rule == used,
            });
            if !ok {
                let what = match &sub {
                    Some(s) => format!("crate::{used}::{s}"),
                    None => format!("crate::{used}"),
                };
                violations.push(format!(
                    "{}:{line}: `{module}` uses `{what}`, which the layering does not allow",
                    file.display()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "upward or sideways imports (see ARCHITECTURE.md, \"Who may call whom\"):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_table_here_matches_architecture_md() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .unwrap();
    for (module, uses) in ALLOWED {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{module}` |")))
            .unwrap_or_else(|| panic!("ARCHITECTURE.md has no table row for `{module}`"));
        for u in *uses {
            assert!(
                row.contains(&format!("`{u}`")),
                "ARCHITECTURE.md's row for `{module}` does not list `{u}`: {row}"
            );
        }
    }
}

#[test]
fn the_scanner_finds_paths() {
    let text = "use crate::spool::Spool;\nuse crate::{message::Envelope, db};\n// crate::queue\nlet x = $crate::foo; let y = crate::deliver::scan::x();";
    let got: Vec<(String, Option<String>)> = crate_paths(text)
        .into_iter()
        .map(|(_, a, b)| (a, b))
        .collect();
    assert!(got.contains(&("spool".into(), Some("Spool".into()))));
    assert!(got.contains(&("message".into(), Some("Envelope".into()))));
    assert!(
        got.contains(&("db".into(), None)) || got.contains(&("db".into(), Some(String::new())))
    );
    assert!(got.contains(&("deliver".into(), Some("scan".into()))));
    assert!(!got.iter().any(|(a, _)| a == "queue" || a == "foo"));
}

/// `proto` files are the pure wire layer: no tokio, no std I/O, no database, so they can
/// be fuzzed and tested with byte strings (ARCHITECTURE.md, "Who may call whom").
#[test]
fn proto_files_do_no_io() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut bad = Vec::new();
    for file in files.iter().filter(|f| {
        f.components().any(|c| c.as_os_str() == "proto")
            || f.file_name().is_some_and(|n| n == "proto.rs")
    }) {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for banned in [
                "tokio::",
                "std::fs",
                "std::net",
                "rusqlite",
                "crate::db",
                "crate::net",
            ] {
                if code.contains(banned) {
                    bad.push(format!(
                        "{}:{}: `{banned}` in a proto file",
                        file.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "proto files must stay pure:\n{}",
        bad.join("\n")
    );
}
