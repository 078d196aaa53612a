//! Interop: the scan stage against the real programs — clamd (Debian's clamav-daemon
//! with the test-only EICAR database from `../shared/interop/start-clamd.sh`), spamd
//! (SpamAssassin, GTUBE) and bogofilter (trained from a generated corpus through the
//! training queue). Each test prints "skipped: <prog> not installed" and returns when
//! its program is missing, so `cargo test` passes on a bare machine.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::{ClamdServer, free_port, have};
use zolder::config::ScanConfig;
use zolder::db;
use zolder::db::quarantine::{self as qdb, TrainKind};
use zolder::deliver::quarantine::{NoticeSettings, Quarantine};
use zolder::deliver::scan::bogofilter::{Bogofilter, train_pending};
use zolder::deliver::scan::clamd::Clamd;
use zolder::deliver::scan::spamd::Spamd;
use zolder::deliver::scan::{Check, Decision, Scanner, Verdict, banned::Banned};
use zolder::message::{Envelope, Incoming, RawMessage, Source};

fn eicar() -> Vec<u8> {
    // Assembled at run time (like eicar.sh) so no file in the tree trips a scanner.
    let mut v = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$".to_vec();
    v.extend_from_slice(b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    v
}

fn headers(subject: &str) -> String {
    format!(
        "Return-Path: <sender@example.org>\r\nReceived: from mx.example.org by pop.example.net; Mon, 3 Jun 2024 09:00:00 +0000\r\n\
         From: Sender <sender@example.org>\r\nTo: Bouke <bouke@zolder.thuis>\r\nSubject: {subject}\r\n\
         Date: Mon, 3 Jun 2024 09:00:00 +0000\r\nMessage-ID: <{}@example.org>\r\nMIME-Version: 1.0\r\n",
        subject.replace(' ', ".")
    )
}

fn with_attachment(subject: &str, name: &str, ctype: &str, data: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let wrapped: Vec<String> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!(
        "{}Content-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n--=_b\r\nContent-Type: text/plain\r\n\r\n\
         Please find the document attached.\r\n--=_b\r\nContent-Type: {ctype}; name=\"{name}\"\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--=_b--\r\n",
        headers(subject),
        wrapped.join("\r\n")
    )
    .into_bytes()
}

fn zip_of(name: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(name, zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap().into_inner()
}

fn env() -> Envelope {
    let mut e = Envelope::new(
        Some("sender@example.org".into()),
        vec!["bouke@zolder.thuis".into()],
        Source::Fetch {
            account: "isp-bouke".into(),
            protocol: "pop3".into(),
            host: "127.0.0.1".into(),
        },
    );
    e.idempotency_key = Some(format!("pop3:isp-bouke:{}", rand_id()));
    e
}

fn rand_id() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn scanner(checks: Vec<Arc<dyn Check>>) -> Scanner {
    Scanner::with_checks(checks, &ScanConfig::default(), "zolder.test").unwrap()
}

fn notice() -> NoticeSettings {
    NoticeSettings {
        hostname: "zolder.test".into(),
        postmaster: "sjoerd".into(),
        notify_recipients: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clamd_eicar_plain_base64_zip_quarantined_with_notice() {
    let Some(clamd) = ClamdServer::start() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let conn = db::open(&data.path().join("zolder.db")).unwrap();
    let q = Quarantine::new(data.path());
    for spec in [clamd.unix(), clamd.tcp()] {
        let s = scanner(vec![
            Arc::new(Banned::default()),
            Arc::new(Clamd::parse(&spec, 25 << 20).unwrap()),
        ]);
        let mut plain = headers("plain eicar").into_bytes();
        plain.extend_from_slice(b"\r\n");
        plain.extend_from_slice(&eicar());
        plain.extend_from_slice(b"\r\n");
        let cases = [
            ("plain", plain),
            (
                "base64 attachment",
                with_attachment("b64 eicar", "test.txt", "text/plain", &eicar()),
            ),
            (
                "inside a zip",
                with_attachment(
                    "zip eicar",
                    "docs.zip",
                    "application/zip",
                    &zip_of("readme.txt", &eicar()),
                ),
            ),
        ];
        for (what, msg) in cases {
            let r = s.verdict(&msg, &env()).await;
            let Decision::Quarantine { scanner, verdict } = &r.decision else {
                panic!("{spec} {what}: {:?}", r.decision);
            };
            assert_eq!(*scanner, "clamd", "{what}");
            let Verdict::Infected(name) = verdict else {
                panic!("{what}: {verdict:?}")
            };
            assert!(name.contains("EICAR"), "{what}: {name}");
            assert!(
                r.headers
                    .iter()
                    .any(|(n, v)| n == "X-Virus-Status" && v.starts_with("Infected"))
            );
            let inc = Incoming {
                envelope: env(),
                message: RawMessage::new(msg.clone()),
            };
            let held = q.hold(&conn, &inc, scanner, verdict, &notice()).unwrap();
            assert!(held.new);
            let text = String::from_utf8_lossy(&held.notices[0].bytes).into_owned();
            assert!(
                text.contains(&format!("A virus ({name}) was found by clamd.")),
                "{text}"
            );
            assert!(text.contains("The message WAS NOT delivered to:"));
            assert_eq!(held.notices[0].recipients, ["sjoerd"]);
            let row = qdb::get(&conn, held.id).unwrap().unwrap();
            assert_eq!(q.read(&row).unwrap(), msg, "stored byte for byte");
        }
        // Clean mail passes and says it was scanned.
        let clean = with_attachment("report", "report.pdf", "application/pdf", b"%PDF-1.4 hello");
        let r = s.verdict(&clean, &env()).await;
        assert_eq!(r.decision, Decision::Deliver, "{spec}");
        assert!(
            r.headers
                .iter()
                .any(|(n, v)| n == "X-Virus-Status" && v == "Clean")
        );
    }
    assert_eq!(qdb::list(&conn, false).unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banned_exe_and_double_extension_quarantined() {
    let data = tempfile::tempdir().unwrap();
    let conn = db::open(&data.path().join("zolder.db")).unwrap();
    let q = Quarantine::new(data.path());
    let s = scanner(vec![Arc::new(Banned::default())]);
    for (name, ctype) in [
        ("setup.exe", "application/octet-stream"),
        ("invoice.pdf.exe", "application/pdf"),
    ] {
        let msg = with_attachment(name, name, ctype, b"not really a program");
        let r = s.verdict(&msg, &env()).await;
        let Decision::Quarantine { scanner, verdict } = &r.decision else {
            panic!("{name}: {:?}", r.decision);
        };
        assert_eq!(*scanner, "banned");
        assert!(
            r.headers
                .iter()
                .any(|(n, v)| n == "X-Zolder-Alert" && v.starts_with("BANNED"))
        );
        let inc = Incoming {
            envelope: env(),
            message: RawMessage::new(msg),
        };
        let held = q.hold(&conn, &inc, scanner, verdict, &notice()).unwrap();
        let text = String::from_utf8_lossy(&held.notices[0].bytes).into_owned();
        assert!(text.contains("BANNED CONTENTS ALERT"), "{text}");
        assert!(text.contains(name), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clamd_down_is_temporary_and_works_again_after_restart() {
    let Some(clamd) = ClamdServer::start() else {
        return;
    };
    let s = scanner(vec![Arc::new(
        Clamd::parse(&clamd.unix(), 25 << 20).unwrap(),
    )]);
    let mut msg = headers("hello").into_bytes();
    msg.extend_from_slice(b"\r\nJust a note.\r\n");
    assert_eq!(s.verdict(&msg, &env()).await.decision, Decision::Deliver);
    clamd.down();
    let r = s.verdict(&msg, &env()).await;
    assert!(
        matches!(
            r.decision,
            Decision::TempFail {
                scanner: "clamd",
                ..
            }
        ),
        "{:?}",
        r.decision
    );
    // fail_open for clamd: delivered unscanned, with a header saying so.
    let cfg = ScanConfig {
        fail_open: vec!["clamd".into()],
        ..Default::default()
    };
    let open = Scanner::with_checks(
        vec![Arc::new(Clamd::parse(&clamd.unix(), 25 << 20).unwrap())],
        &cfg,
        "zolder.test",
    )
    .unwrap();
    let r = open.verdict(&msg, &env()).await;
    assert_eq!(r.decision, Decision::Deliver);
    assert!(r.headers.iter().any(|(n, _)| n == "X-Zolder-Scan"));
    clamd.up();
    assert_eq!(s.verdict(&msg, &env()).await.decision, Decision::Deliver);
}

/// spamd on a free loopback port, killed on drop.
struct SpamdGuard {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl SpamdGuard {
    async fn start() -> Option<SpamdGuard> {
        if !have("spamd") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut cmd = Command::new("spamd");
        cmd.arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!(
                "--pidfile={}",
                dir.path().join("spamd.pid").display()
            ))
            .args(["--max-children=1", "-x", "-L", "--syslog=stderr"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if nix::unistd::geteuid().is_root() {
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd.spawn().ok()?;
        let g = SpamdGuard {
            child,
            port,
            _dir: dir,
        };
        // Rule compilation takes a few seconds; wait for PONG.
        for _ in 0..600 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"PING SPAMC/1.5\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.contains("PONG") {
                    return Some(g);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("spamd did not answer PING within 60 s");
    }
}

impl Drop for SpamdGuard {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spamd_gtube_goes_to_junk_with_headers() {
    let Some(spamd) = SpamdGuard::start().await else {
        return;
    };
    let s = scanner(vec![Arc::new(Spamd::new(
        &format!("127.0.0.1:{}", spamd.port),
        None,
    ))]);
    let mut gtube = headers("cheap offer").into_bytes();
    gtube.extend_from_slice(
        b"\r\nThis is the GTUBE, the\r\nGeneric Test for Unsolicited Bulk Email\r\n\r\n\
XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n",
    );
    let r = s.verdict(&gtube, &env()).await;
    assert_eq!(r.decision, Decision::Junk, "{r:?}");
    let Some((true, score)) = r.spam() else {
        panic!("{r:?}")
    };
    assert!(score >= 100.0, "{score}");
    let status = r
        .headers
        .iter()
        .find(|(n, _)| n == "X-Spam-Status")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert!(
        status.starts_with("Yes, score=") && status.contains("GTUBE"),
        "{status}"
    );
    assert!(
        r.headers
            .iter()
            .any(|(n, v)| n == "X-Spam-Flag" && v == "YES")
    );
    let stored = r.apply(&gtube);
    assert!(stored.starts_with(b"X-Spam-Status: Yes"));
    assert!(stored.ends_with(&gtube), "original bytes follow unchanged");

    let mut ham = headers("lunch on sunday").into_bytes();
    ham.extend_from_slice(
        b"\r\nHi Bouke,\r\n\r\nShall we have lunch on sunday at the usual place?\r\n\r\nOma\r\n",
    );
    let r = s.verdict(&ham, &env()).await;
    assert_eq!(r.decision, Decision::Deliver, "{r:?}");
    assert!(
        r.headers
            .iter()
            .any(|(n, v)| n == "X-Spam-Flag" && v == "NO")
    );
}

const SPAM_WORDS: &[&str] = &[
    "viagra",
    "casino",
    "winner",
    "lottery",
    "pills",
    "cheap",
    "bitcoin",
    "prize",
    "unclaimed",
    "million",
    "offer",
    "click",
    "refinance",
    "mortgage",
    "replica",
    "watches",
    "bonus",
];
const HAM_WORDS: &[&str] = &[
    "sunday", "lunch", "garden", "school", "homework", "grandma", "football", "dinner", "holiday",
    "pictures", "kitchen", "birthday", "church", "bicycle", "weekend", "cousins",
];

fn corpus_message(i: usize, words: &[&str], subject: &str) -> Vec<u8> {
    let mut body = String::new();
    for k in 0..60 {
        body.push_str(words[(i * 7 + k * 3) % words.len()]);
        body.push(if k % 10 == 9 { '\n' } else { ' ' });
    }
    let mut m = headers(&format!("{subject} {i}")).into_bytes();
    m.extend_from_slice(format!("\r\n{body}\r\n").as_bytes());
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bogofilter_learns_from_the_training_queue_and_classifies() {
    if !have("bogofilter") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let conn = Mutex::new(db::open(&data.path().join("zolder.db")).unwrap());
    let bogo = Bogofilter::new("bogofilter", data.path().join("bogofilter"));
    // What the IMAP server would do on MOVE into / out of Junk.
    let mut store = std::collections::HashMap::new();
    for i in 0..20 {
        store.insert(
            ("Junk".to_string(), i as u32),
            corpus_message(i, SPAM_WORDS, "Winner"),
        );
        qdb::enqueue_training(
            &conn.lock().unwrap(),
            "bouke",
            "Junk",
            i as u32,
            TrainKind::Spam,
        )
        .unwrap();
        store.insert(
            ("INBOX".to_string(), i as u32),
            corpus_message(i, HAM_WORDS, "Family"),
        );
        qdb::enqueue_training(
            &conn.lock().unwrap(),
            "bouke",
            "INBOX",
            i as u32,
            TrainKind::Ham,
        )
        .unwrap();
    }
    let load = |_user: String, mbox: String, uid: u32| {
        let found = store.get(&(mbox, uid)).cloned();
        async move { found }
    };
    let stats = train_pending(&conn, &bogo, 100, load).await.unwrap();
    assert_eq!(stats.trained, 40, "{stats:?}");
    assert!(bogo.trained());

    let s = scanner(vec![Arc::new(bogo.clone())]);
    let spam = corpus_message(99, SPAM_WORDS, "Claim your prize");
    let r = s.verdict(&spam, &env()).await;
    assert_eq!(r.decision, Decision::Junk, "{r:?}");
    assert!(
        r.headers
            .iter()
            .any(|(n, v)| n == "X-Bogosity" && v.starts_with("Spam")),
        "{r:?}"
    );
    let ham = corpus_message(99, HAM_WORDS, "Sunday");
    let r = s.verdict(&ham, &env()).await;
    assert_eq!(r.decision, Decision::Deliver, "{r:?}");
    assert!(
        r.headers
            .iter()
            .any(|(n, v)| n == "X-Bogosity" && v.starts_with("Ham"))
    );

    // A message moved out of Junk again is un-learned as spam and learned as ham (-Sn).
    qdb::enqueue_training(&conn.lock().unwrap(), "bouke", "Junk", 0, TrainKind::Ham).unwrap();
    let stats = train_pending(&conn, &bogo, 100, load).await.unwrap();
    assert_eq!(stats.trained, 1);
    let d = zolder::deliver::scan::bogofilter::digest(&store[&("Junk".to_string(), 0)]);
    assert_eq!(
        qdb::registered(&conn.lock().unwrap(), &d).unwrap(),
        Some(TrainKind::Ham)
    );
    // A request for a message that is gone is retried, not lost silently.
    qdb::enqueue_training(&conn.lock().unwrap(), "bouke", "Junk", 999, TrainKind::Spam).unwrap();
    let stats = train_pending(&conn, &bogo, 100, load).await.unwrap();
    assert_eq!(stats.failed, 1);
}

// ---------------------------------------------------------------------------------
// Through the delivery pipeline (deliver::LocalDelivery with the scan and Sieve hooks)
// ---------------------------------------------------------------------------------

use zolder::config::Config;
use zolder::deliver::LocalDelivery;
use zolder::message::{Deliver, RcptOutcome};
use zolder::spool::Spool;

struct Site {
    dir: tempfile::TempDir,
    cfg: Config,
    spool: Spool,
    pipeline: LocalDelivery,
}

fn site(scan: &str) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "hostname = \"zolder.thuis\"\ndata_dir = \"{}\"\nlocal_domains = [\"zolder.thuis\"]\n\
         postmaster = \"sjoerd\"\n\
         [[users]]\nname = \"bouke\"\naddresses = [\"bouke@zolder.thuis\"]\n\
         [[users]]\nname = \"sjoerd\"\naddresses = [\"sjoerd@zolder.thuis\"]\n{scan}\n",
        dir.path().join("data").display()
    );
    let cfg = Config::from_str_at(&text, &dir.path().join("zolder.toml"), false).unwrap();
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    drop(db::open(&cfg.db_path()).unwrap());
    let spool = Spool::open(&cfg).unwrap();
    let pipeline = zolder::deliver::scan::stage::wire(
        &cfg,
        LocalDelivery::new(Arc::new(cfg.clone()), spool.clone()),
    )
    .unwrap();
    Site {
        dir,
        cfg,
        spool,
        pipeline,
    }
}

impl Site {
    fn count(&self, user: &str, mailbox: &str) -> usize {
        self.spool
            .select(user, mailbox)
            .map(|s| s.messages.len())
            .unwrap_or(0)
    }
    fn first(&self, user: &str, mailbox: &str) -> Vec<u8> {
        let st = self.spool.select(user, mailbox).unwrap();
        self.spool
            .read_message(user, mailbox, st.messages[0].uid)
            .unwrap()
    }
    fn sieve(&self, rel: &str, text: &str) {
        let p = self.cfg.data_dir.join("sieve").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    async fn deliver(&self, from: &str, msg: &[u8]) -> zolder::message::DeliveryReport {
        let mut e = env();
        e.sender = Some(from.into());
        self.pipeline
            .deliver(Incoming {
                envelope: e,
                message: RawMessage::new(msg.to_vec()),
            })
            .await
    }
}

fn plain_mail(from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: Bouke <bouke@zolder.thuis>\r\nSubject: {subject}\r\n\
         Date: Mon, 3 Jun 2024 09:00:00 +0000\r\nMessage-ID: <{}@example.org>\r\n\r\n{body}\r\n",
        rand_id()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_quarantines_eicar_and_banned_release_delivers() {
    let Some(clamd) = ClamdServer::start() else {
        return;
    };
    let s = site(&format!(
        "[scan]\nbanned = true\nclamd = \"{}\"\n",
        clamd.unix()
    ));
    let zipped = with_attachment(
        "zip",
        "docs.zip",
        "application/zip",
        &zip_of("readme.txt", &eicar()),
    );
    let banned = with_attachment("double", "invoice.pdf.exe", "application/pdf", b"x");
    for msg in [&zipped, &banned] {
        let r = s.deliver("sender@example.org", msg).await;
        assert_eq!(r.outcomes[0].1, RcptOutcome::Delivered, "{r:?}");
        assert_eq!(r.generated.len(), 1);
        assert_eq!(r.generated[0].reason, "quarantine-notice");
        assert_eq!(r.generated[0].recipients, ["sjoerd"]);
    }
    assert_eq!(
        s.count("bouke", "INBOX"),
        0,
        "nothing infected or banned reached the inbox"
    );
    let conn = db::open(&s.cfg.db_path()).unwrap();
    let held = qdb::list(&conn, false).unwrap();
    assert_eq!(held.len(), 2);
    assert_eq!(
        (held[0].scanner.as_str(), held[1].scanner.as_str()),
        ("clamd", "banned")
    );

    // Release the banned one: delivered (banned skipped; clamd still finds it clean).
    let q = Quarantine::new(&s.cfg.data_dir);
    let (row, inc) = q.release_incoming(&conn, held[1].id).unwrap();
    let r = zolder::deliver::scan::stage::redeliver(&s.cfg, &row.scanner, inc)
        .await
        .unwrap();
    assert!(r.all_delivered(), "{r:?}");
    q.finish_release(&conn, &row).unwrap();
    assert_eq!(s.count("bouke", "INBOX"), 1);
    let stored = s.first("bouke", "INBOX");
    assert!(
        stored.ends_with(&banned),
        "delivered byte for byte after our headers"
    );
    assert_eq!(qdb::list(&conn, false).unwrap().len(), 1);
    drop(s.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_clamd_down_defers_then_delivers() {
    let Some(clamd) = ClamdServer::start() else {
        return;
    };
    let s = site(&format!(
        "[scan]\nclamd = \"{}\"\ntimeout = 5\n",
        clamd.tcp()
    ));
    let msg = plain_mail("oma@family.example", "hello", "Lunch on sunday?");
    clamd.down();
    let r = s.deliver("oma@family.example", &msg).await;
    assert!(r.outcomes[0].1.is_temporary(), "{r:?}");
    assert!(!r.is_final(), "the fetcher keeps it at the ISP");
    assert_eq!(s.count("bouke", "INBOX"), 0);
    clamd.up();
    // The retry (same delivery key, as a re-fetch would have) gets through once.
    let r = s.deliver("oma@family.example", &msg).await;
    assert!(r.all_delivered(), "{r:?}");
    assert_eq!(s.count("bouke", "INBOX"), 1);
    let stored = s.first("bouke", "INBOX");
    let text = String::from_utf8_lossy(&stored);
    assert!(text.contains("X-Virus-Status: Clean"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_gtube_to_junk_with_headers() {
    let Some(spamd) = SpamdGuard::start().await else {
        return;
    };
    let s = site(&format!("[scan]\nspamd = \"127.0.0.1:{}\"\n", spamd.port));
    let gtube = plain_mail(
        "spammer@example.net",
        "cheap offer",
        "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X",
    );
    let r = s.deliver("spammer@example.net", &gtube).await;
    assert!(r.all_delivered(), "{r:?}");
    assert_eq!(s.count("bouke", "INBOX"), 0);
    assert_eq!(s.count("bouke", "Junk"), 1);
    let text = String::from_utf8_lossy(&s.first("bouke", "Junk")).into_owned();
    assert!(text.contains("X-Spam-Flag: YES"), "{text}");
    assert!(text.contains("X-Spam-Status: Yes, score="), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_sieve_whitelist_vacation_and_broken_script() {
    // Sieve needs no outside program.
    let s = site("");
    s.sieve(
        "bouke.sieve",
        "require [\"fileinto\", \"extlists\", \"envelope\", \"vacation\"];\n\
         if envelope :list \"from\" \"whitelist\" { fileinto \"Trusted\"; stop; }\n\
         vacation :days 7 :subject \"Away\" \"Back on monday.\";\n",
    );
    s.sieve("lists/bouke/whitelist", "oma@family.example\n");
    let r = s
        .deliver(
            "oma@family.example",
            &plain_mail("oma@family.example", "hi", "x"),
        )
        .await;
    assert!(r.all_delivered(), "{r:?}");
    assert_eq!(s.count("bouke", "Trusted"), 1);
    assert!(r.generated.is_empty(), "whitelisted: stop before vacation");

    for i in 0..3 {
        let r = s
            .deliver(
                "stranger@example.net",
                &plain_mail("stranger@example.net", &format!("question {i}"), "x"),
            )
            .await;
        assert!(r.all_delivered(), "{r:?}");
        let replies: Vec<_> = r
            .generated
            .iter()
            .filter(|g| g.reason == "vacation")
            .collect();
        assert_eq!(
            replies.len(),
            usize::from(i == 0),
            "message {i}: one reply per sender per period"
        );
        if i == 0 {
            assert_eq!(replies[0].recipients, ["stranger@example.net"]);
            assert_eq!(replies[0].sender, None);
        }
    }
    assert_eq!(s.count("bouke", "INBOX"), 3);

    // A syntax error: everything lands in INBOX.
    s.sieve(
        "bouke.sieve",
        "require \"fileinto\";\nif header :contains { fileinto \"X\" }\n",
    );
    let r = s
        .deliver(
            "oma@family.example",
            &plain_mail("oma@family.example", "still here", "x"),
        )
        .await;
    assert!(r.all_delivered(), "{r:?}");
    assert_eq!(s.count("bouke", "INBOX"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_junk_moves_train_bogofilter_end_to_end() {
    use zolder::imapd::backend::Backend;
    use zolder::imapd::store::SpoolBackend;
    if !have("bogofilter") {
        return;
    }
    // Delivery with bogofilter on: untrained at first, so everything reaches INBOX.
    let s = site("[scan]\nbogofilter = true\n");
    let mut spam_uids = vec![];
    let mut ham_uids = vec![];
    for i in 0..15 {
        for (words, subject, uids) in [
            (SPAM_WORDS, "Winner", &mut spam_uids),
            (HAM_WORDS, "Family", &mut ham_uids),
        ] {
            let r = s
                .deliver("someone@example.org", &corpus_message(i, words, subject))
                .await;
            assert!(r.all_delivered(), "{r:?}");
            let st = s.spool.select("bouke", "INBOX").unwrap();
            uids.push(st.messages.last().unwrap().uid);
        }
    }
    // The family sorts over IMAP: spam into Junk; ham that bogofilter had in Junk
    // (here: put there and taken out again) back to INBOX.
    let imap = SpoolBackend::new(s.spool.clone()).with_training(s.cfg.db_path());
    imap.copy("bouke", "INBOX", &spam_uids, "Junk").unwrap();
    let (_, in_junk) = imap.copy("bouke", "INBOX", &ham_uids, "Junk").unwrap();
    let back: Vec<u32> = in_junk.iter().map(|p| p.1).collect();
    imap.copy("bouke", "Junk", &back, "INBOX").unwrap();

    // The trainer drains the queue (the daemon runs this every minute).
    let conn = Mutex::new(db::open(&s.cfg.db_path()).unwrap());
    let bogo = Bogofilter::new("bogofilter", s.cfg.data_dir.join("bogofilter"));
    let spool = s.spool.clone();
    let load = |user: String, mailbox: String, uid: u32| {
        let sp = spool.clone();
        async move {
            sp.run(move |x| x.read_message(&user, &mailbox, uid))
                .await
                .ok()
        }
    };
    let stats = train_pending(&conn, &bogo, 1000, load).await.unwrap();
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert!(stats.trained >= 30, "{stats:?}");

    // A new spam is now filed into Junk by delivery.
    let r = s
        .deliver(
            "win@lottery.example",
            &corpus_message(77, SPAM_WORDS, "Prize"),
        )
        .await;
    assert!(r.all_delivered());
    let junk = s.spool.select("bouke", "Junk").unwrap();
    let last = s
        .spool
        .read_message("bouke", "Junk", junk.messages.last().unwrap().uid)
        .unwrap();
    let text = String::from_utf8_lossy(&last);
    assert!(text.contains("X-Bogosity: Spam"), "{text}");
    assert!(text.contains("Subject: Prize 77"), "{text}");
}
