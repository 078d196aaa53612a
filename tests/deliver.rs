//! Local delivery end to end: the real `zolder deliver` binary and the in-process
//! pipeline writing real Maildirs and mboxes in a temp dir.
//!
//! Covers: byte-exact storage of awkward messages (8-bit, bare LF, CRLF, NUL bytes,
//! `From ` lines, header only, broken MIME, a 20 MB attachment) in Maildir and mbox;
//! exit codes (67 unknown user, 65 empty input and alias loops); exactly-once with an
//! idempotency key; 8 concurrent writers into one mbox and one Maildir (read back with
//! Python's `mailbox` module when python3 is installed); and a crash test that kills
//! `zolder deliver` with SIGKILL at random moments, retries with the same key, and then
//! checks that nothing half-written is visible, the index matches the files, every
//! acknowledged message is there and nothing is there twice.
//! `DELIVER_CRASH_ITERATIONS` sets the crash loop length (default 60; the full run in
//! `tests/crash/deliver-crash.sh` uses 300). Not `ZOLDER_…`: those are config overrides.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use zolder::config::Config;
use zolder::deliver::LocalDelivery;
use zolder::message::{Deliver, Envelope, Incoming, RawMessage, Source};
use zolder::spool::Spool;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            r#"hostname = "zolder.test"
data_dir = "data"
local_domains = ["zolder.test"]
postmaster = "bouke"

[[users]]
name = "bouke"
addresses = ["bouke@zolder.test"]
spool = "maildir"

[[users]]
name = "sjoerd"
addresses = ["sjoerd@zolder.test"]
spool = "mbox"

[aliases]
both = ["bouke", "sjoerd"]
loop1 = ["loop2"]
loop2 = ["loop1"]
family = ["bouke", "oma@elsewhere.example"]
{extra}
"#
        );
        std::fs::write(dir.path().join("zolder.toml"), text).unwrap();
        Env { dir }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("zolder.toml")
    }

    /// The config without `ZOLDER_*` overrides (the test's environment is not ours).
    fn config(&self) -> Config {
        let text = std::fs::read_to_string(self.config_path()).unwrap();
        Config::from_str_at(&text, &self.config_path(), false).unwrap()
    }

    fn spool(&self) -> Spool {
        Spool::open(&self.config()).unwrap()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn maildir_new(&self, user: &str) -> PathBuf {
        self.data().join("mail").join(user).join("Maildir/new")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_zolder"));
        // ZOLDER_* variables are config overrides: keep the test's environment out.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ZOLDER_") {
                c.env_remove(k);
            }
        }
        c.arg("--config")
            .arg(self.config_path())
            .arg("deliver")
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    /// Runs `zolder deliver ARGS` with `input` on stdin; returns (exit code, stderr).
    fn deliver(&self, args: &[&str], input: &[u8]) -> (i32, String) {
        let mut child = self.command(args).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Splits a stored message into our prepended trace block and the rest, checking the
/// block is exactly Return-Path, Delivered-To and Received (with its continuation
/// lines).
fn strip_trace<'a>(stored: &'a [u8], original: &[u8]) -> &'a [u8] {
    assert!(
        stored.len() > original.len(),
        "stored message shorter than the input"
    );
    let (head, body) = stored.split_at(stored.len() - original.len());
    let head = String::from_utf8(head.to_vec()).expect("trace headers are UTF-8");
    let lines: Vec<&str> = head.split_inclusive('\n').collect();
    assert!(lines[0].starts_with("Return-Path: <"), "{head}");
    assert!(lines[1].starts_with("Delivered-To: "), "{head}");
    assert!(lines[2].starts_with("Received: "), "{head}");
    assert!(lines[3..].iter().all(|l| l.starts_with('\t')), "{head}");
    body
}

fn only_file(dir: &Path) -> Vec<u8> {
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::read(&files[0]).unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

const FIXTURES: &[&str] = &[
    "8bit.eml",
    "bare-lf.eml",
    "crlf.eml",
    "nul-bytes.eml",
    "from-line.eml",
    "header-only.eml",
    "broken-mime.eml",
];

#[test]
fn fixtures_are_stored_byte_exact_in_maildir_and_mbox() {
    for name in FIXTURES {
        let env = Env::new("");
        let input = fixture(name);
        let (code, err) = env.deliver(&["--user", "bouke", "--from", "alice@example.org"], &input);
        assert_eq!(code, 0, "{name}: {err}");
        let (code, err) = env.deliver(&["--user", "sjoerd", "--from", "alice@example.org"], &input);
        assert_eq!(code, 0, "{name}: {err}");

        // Maildir: the file on disk is our trace block + the input, byte for byte.
        let stored = only_file(&env.maildir_new("bouke"));
        assert_eq!(strip_trace(&stored, &input), &input[..], "{name} (maildir)");

        // mbox: read back through the index; quoting undone.
        let spool = env.spool();
        let st = spool.select("sjoerd", "INBOX").unwrap();
        assert_eq!(st.messages.len(), 1, "{name}");
        let back = spool
            .read_message("sjoerd", "INBOX", st.messages[0].uid)
            .unwrap();
        assert_eq!(strip_trace(&back, &input), &input[..], "{name} (mbox)");
        assert_eq!(
            st.messages[0].size,
            zolder::spool::crlf_size(&back),
            "{name}: RFC822.SIZE"
        );
        // On disk, body lines starting "From " are quoted.
        let raw = std::fs::read(env.data().join("spool/sjoerd")).unwrap();
        assert!(raw.starts_with(b"From alice@example.org "), "{name}");
        assert_eq!(
            raw.split(|&b| b == b'\n')
                .filter(|l| l.starts_with(b"From "))
                .count(),
            1,
            "{name}: only the separator line may start with From"
        );
    }
}

#[test]
fn crlf_message_gets_crlf_trace_headers() {
    let env = Env::new("");
    let input = fixture("crlf.eml");
    assert_eq!(env.deliver(&["--user", "bouke"], &input).0, 0);
    let stored = only_file(&env.maildir_new("bouke"));
    let head = &stored[..stored.len() - input.len()];
    assert!(!head.is_empty());
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' {
            assert_eq!(head[i - 1], b'\r', "bare LF in the trace block");
        }
    }
}

/// A multipart message with a base64 attachment of about `mb` megabytes.
fn big_message(mb: usize) -> Vec<u8> {
    use base64::Engine;
    let mut raw = vec![0u8; mb * 1024 * 1024 * 3 / 4];
    let mut x: u64 = 0x9E3779B97F4A7C15;
    for b in raw.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    let mut m = b"From: a@example.org\nSubject: big\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nsee attachment\n--b\nContent-Type: application/octet-stream; name=\"big.bin\"\nContent-Transfer-Encoding: base64\n\n".to_vec();
    for line in b64.as_bytes().chunks(76) {
        m.extend_from_slice(line);
        m.push(b'\n');
    }
    m.extend_from_slice(b"--b--\n");
    m
}

#[test]
fn twenty_megabyte_attachment() {
    let env = Env::new("");
    let input = big_message(20);
    assert!(input.len() > 20_000_000);
    let (code, err) = env.deliver(&["--user", "both"], &input);
    assert_eq!(code, 0, "{err}");
    let stored = only_file(&env.maildir_new("bouke"));
    assert_eq!(strip_trace(&stored, &input), &input[..]);
    let spool = env.spool();
    let st = spool.select("sjoerd", "INBOX").unwrap();
    let back = spool
        .read_message("sjoerd", "INBOX", st.messages[0].uid)
        .unwrap();
    assert_eq!(strip_trace(&back, &input), &input[..]);
}

#[test]
fn exit_codes_for_unknown_user_empty_input_and_alias_loop() {
    let env = Env::new("");
    let (code, err) = env.deliver(&["--user", "nobody"], b"Subject: x\n\nx\n");
    assert_eq!(code, 67, "{err}");
    assert!(err.contains("no such user"), "{err}");
    let (code, _) = env.deliver(&["--user", "bouke"], b"");
    assert_eq!(code, 65);
    let (code, err) = env.deliver(&["--user", "loop1"], b"Subject: x\n\nx\n");
    assert_eq!(code, 65, "{err}");
    assert!(err.contains("loop"), "{err}");
    // Nothing was stored by any of them.
    assert!(
        !env.maildir_new("bouke").exists()
            || std::fs::read_dir(env.maildir_new("bouke")).unwrap().count() == 0
    );
}

#[test]
fn remote_alias_target_is_queued_for_the_smarthost() {
    let env = Env::new("");
    let (code, err) = env.deliver(
        &["--user", "family"],
        b"Return-Path: <kees@isp.example>\nSubject: to all\n\nhello\n",
    );
    assert_eq!(code, 0, "{err}");
    // The local member has it.
    assert_eq!(
        std::fs::read_dir(env.maildir_new("bouke")).unwrap().count(),
        1
    );
    // The remote member's copy waits in the queue (no daemon, no smarthost yet).
    let mut c = Command::new(env!("CARGO_BIN_EXE_zolder"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ZOLDER_") {
            c.env_remove(k);
        }
    }
    let out = c
        .arg("--config")
        .arg(env.config_path())
        .args(["queue", "list"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{list}");
    assert!(list.contains("oma@elsewhere.example"), "{list}");
    assert!(!list.contains("bouke@"), "{list}");
}

#[test]
fn same_idempotency_key_twice_is_stored_once() {
    let env = Env::new("");
    for _ in 0..2 {
        for user in ["bouke", "sjoerd"] {
            let (code, err) = env.deliver(
                &["--user", user, "--idempotency-key", "pop3:isp:UIDL-42"],
                b"Subject: once\n\nonly once\n",
            );
            assert_eq!(code, 0, "{err}");
        }
    }
    let spool = env.spool();
    assert_eq!(spool.select("bouke", "INBOX").unwrap().messages.len(), 1);
    assert_eq!(spool.select("sjoerd", "INBOX").unwrap().messages.len(), 1);
    // A different key is a different delivery.
    let (code, _) = env.deliver(
        &["--user", "bouke", "--idempotency-key", "pop3:isp:UIDL-43"],
        b"Subject: once\n\nonly once\n",
    );
    assert_eq!(code, 0);
    assert_eq!(spool.select("bouke", "INBOX").unwrap().messages.len(), 2);
}

fn have_python() -> bool {
    Command::new("python3")
        .arg("-c")
        .arg("import mailbox")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Subjects of the messages in an mbox, as Python's `mailbox` module reads them.
fn python_mbox_subjects(path: &Path) -> Vec<String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import mailbox,sys\n\
             for m in mailbox.mbox(sys.argv[1], create=False):\n\
             \x20   body = m.get_payload()\n\
             \x20   ok = body.startswith('line one\\n>From the middle\\n') and body.rstrip('\\n').endswith('end')\n\
             \x20   print(m['Subject'] + ('' if ok else ' BROKEN'))\n",
        )
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn eight_concurrent_writers_into_one_mbox_and_one_maildir() {
    const WRITERS: usize = 8;
    const EACH: usize = 200;
    let env = Env::new("");
    let cfg = Arc::new(env.config());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            // Each writer its own Spool (own connections), as separate processes would.
            let ld = LocalDelivery::new(cfg.clone(), Spool::open(&cfg).unwrap());
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    let body = format!(
                        "Subject: w{w}-m{i}\nMessage-ID: <w{w}.m{i}@test>\n\nline one\nFrom the middle\n{}\nend\n",
                        "x".repeat(i * 7 % 500)
                    );
                    let r = ld
                        .deliver(Incoming {
                            envelope: Envelope::new(
                                Some("a@example.org".into()),
                                vec!["both".into()],
                                Source::Local { user: "test".into() },
                            ),
                            message: RawMessage::new(body.into_bytes()),
                        })
                        .await;
                    assert!(r.all_delivered(), "{r:?}");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let total = WRITERS * EACH;
    let spool = env.spool();
    let st = spool.select("bouke", "INBOX").unwrap();
    assert_eq!(st.messages.len(), total);
    let uids: std::collections::BTreeSet<u32> = st.messages.iter().map(|m| m.uid).collect();
    assert_eq!(uids.len(), total);
    assert_eq!(
        std::fs::read_dir(env.maildir_new("bouke")).unwrap().count(),
        total
    );
    let st = spool.select("sjoerd", "INBOX").unwrap();
    assert_eq!(st.messages.len(), total);
    let mut seen = std::collections::HashSet::new();
    for m in &st.messages {
        let b = spool.read_message("sjoerd", "INBOX", m.uid).unwrap();
        let s = String::from_utf8(b).unwrap();
        let subj = s
            .lines()
            .find(|l| l.starts_with("Subject: "))
            .unwrap()
            .to_string();
        assert!(
            s.ends_with("\nend\n") && s.contains("\nFrom the middle\n"),
            "{s}"
        );
        assert!(seen.insert(subj));
    }
    if !have_python() {
        println!("skipped: python3 not installed (mbox read-back by Python's mailbox module)");
        return;
    }
    let subjects = python_mbox_subjects(&env.data().join("spool/sjoerd"));
    assert_eq!(subjects.len(), total);
    assert!(
        subjects.iter().all(|s| !s.ends_with("BROKEN")),
        "{subjects:?}"
    );
    let distinct: std::collections::HashSet<_> = subjects.iter().collect();
    assert_eq!(distinct.len(), total);
}

/// Tiny deterministic PRNG for kill delays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn crash_at_random_moments_then_retry_stores_each_message_exactly_once() {
    let iterations: usize = std::env::var("DELIVER_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let env = Env::new("");
    let filler = "0123456789abcdef".repeat(16 * 1024); // 256 KiB: a real write window
    let mut rng = Rng(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1);
    // Calibrate: how long does an uninterrupted delivery take here? Kill moments are
    // spread over 0..1.2× that, so they land in every phase (start-up, reading,
    // writing, fsync, rename, commit) and some deliveries finish.
    let t = std::time::Instant::now();
    for c in 0..3 {
        let (code, err) = env.deliver(
            &["--user", "bouke"],
            format!("Subject: calibrate-{c}\n\n{filler}\nEND-cal\n").as_bytes(),
        );
        assert_eq!(code, 0, "{err}");
    }
    let window = (t.elapsed().as_micros() as u64 / 3 * 6 / 5).max(1000);
    let calibration = std::fs::read_dir(env.maildir_new("bouke")).unwrap().count();
    let mut killed = 0;
    for i in 0..iterations {
        let user = if i % 2 == 0 { "bouke" } else { "sjoerd" };
        let msg = format!("Subject: crash-{i}\n\n{filler}\nEND-{i}\n");
        let key = format!("crash:{i}");
        let args = ["--user", user, "--idempotency-key", key.as_str()];
        let mut child = env.command(&args).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let bytes = msg.clone().into_bytes();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
        std::thread::sleep(Duration::from_micros(rng.next() % window));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        writer.join().unwrap();
        if status.code() != Some(0) {
            killed += 1;
            // The caller (fetch) did not get an answer, so it tries again.
            let (code, err) = env.deliver(&args, msg.as_bytes());
            assert_eq!(code, 0, "retry of {i}: {err}");
        }
    }
    println!(
        "{iterations} deliveries, {killed} killed and retried (kill window {} ms)",
        window / 1000
    );

    // No half-written message is visible in a Maildir (tmp/ may hold leftovers).
    let cur = env.data().join("mail/bouke/Maildir/cur");
    for dir in [env.maildir_new("bouke"), cur] {
        for f in std::fs::read_dir(&dir).unwrap() {
            let b = std::fs::read(f.unwrap().path()).unwrap();
            let s = String::from_utf8(b).unwrap();
            assert!(
                s.starts_with("Return-Path: "),
                "partial file in {}",
                dir.display()
            );
            assert!(
                s.trim_end()
                    .rsplit('\n')
                    .next()
                    .unwrap()
                    .starts_with("END-")
            );
        }
    }
    // The index matches the files, each message is complete and there exactly once.
    let spool = env.spool();
    for user in ["bouke", "sjoerd"] {
        let st = spool.select(user, "INBOX").unwrap();
        let expected: Vec<usize> = (0..iterations)
            .filter(|i| (i % 2 == 0) == (user == "bouke"))
            .collect();
        let mut got = Vec::new();
        for m in &st.messages {
            let b = spool.read_message(user, "INBOX", m.uid).unwrap();
            let s = String::from_utf8(b).unwrap();
            if s.contains("\nSubject: calibrate-") {
                continue;
            }
            let n: usize = s
                .lines()
                .find_map(|l| l.strip_prefix("Subject: crash-"))
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                s.ends_with(&format!("{filler}\nEND-{n}\n")),
                "message {n} incomplete"
            );
            assert_eq!(m.size, zolder::spool::crlf_size(s.as_bytes()));
            got.push(n);
        }
        got.sort();
        assert_eq!(got, expected, "{user}: every message exactly once");
        if user == "bouke" {
            let files = std::fs::read_dir(env.maildir_new("bouke")).unwrap().count()
                + std::fs::read_dir(env.data().join("mail/bouke/Maildir/cur"))
                    .unwrap()
                    .count();
            assert_eq!(files, st.messages.len());
            assert_eq!(st.messages.len(), expected.len() + calibration);
        }
    }
    if have_python() {
        let subjects = Command::new("python3")
            .arg("-c")
            .arg("import mailbox,sys\nprint(len(mailbox.mbox(sys.argv[1], create=False)))")
            .arg(env.data().join("spool/sjoerd"))
            .output()
            .unwrap();
        let n: usize = String::from_utf8_lossy(&subjects.stdout)
            .trim()
            .parse()
            .unwrap();
        assert_eq!(n, iterations / 2);
    } else {
        println!("skipped: python3 not installed (mbox read-back by Python's mailbox module)");
    }
}
