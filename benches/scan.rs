//! Benchmark (not a test): the cost of each scanner in the delivery pipeline.
//!
//! Delivers N mixed messages (`../shared/interop/gen_messages.py --mix mixed`, default
//! N = 2000, `BENCH_N` to change) through `deliver::LocalDelivery` into a fresh
//! data_dir, once per configuration: plain (no scanner), banned, clamd (the shared
//! EICAR-only clamd), bogofilter (trained on a small corpus first), and all three.
//! Prints wall time, messages per second and the per-message overhead of each
//! configuration over plain delivery. The reference programs are measured in the same
//! run over the same files: `clamdscan --stream` (one process per message, as a
//! procmail/maildrop set-up calls it) and `bogofilter` (one process per message).
//!
//!     cargo bench --bench scan                 # BENCH_N=500 for a quick run
//!
//! Needs python3; the clamd and bogofilter rows are skipped when those are missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use zolder::config::Config;
use zolder::deliver::LocalDelivery;
use zolder::deliver::hooks::{FilterStage, ScanStage};
use zolder::deliver::scan::stage::{ScanHook, SieveHook};
use zolder::deliver::scan::{Check, Scanner};
use zolder::deliver::scan::{banned::Banned, bogofilter::Bogofilter, clamd::Clamd};
use zolder::message::{Deliver, Envelope, Incoming, RawMessage, Source};
use zolder::spool::Spool;

const BATCH: usize = 32;

fn interop_dir() -> Option<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/interop"))
        .find(|p| p.join("gen_messages.py").exists())
}

fn have(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn config(dir: &Path) -> Config {
    let text = format!(
        "hostname = \"zolder.bench\"\ndata_dir = \"{}\"\nlocal_domains = [\"zolder.bench\"]\n\
         postmaster = \"bouke\"\n[[users]]\nname = \"bouke\"\naddresses = [\"bouke@zolder.bench\"]\n",
        dir.join("data").display()
    );
    Config::from_str_at(&text, &dir.join("zolder.toml"), false).expect("bench config")
}

fn incoming(i: usize, bytes: &[u8]) -> Incoming {
    let mut env = Envelope::new(
        Some("sender@isp.example".into()),
        vec!["bouke@zolder.bench".into()],
        Source::Fetch {
            account: "bench".into(),
            protocol: "pop3".into(),
            host: "127.0.0.1".into(),
        },
    );
    env.idempotency_key = Some(format!("pop3:bench:{i}"));
    Incoming {
        envelope: env,
        message: RawMessage::new(bytes.to_vec()),
    }
}

/// Delivers every message once through a pipeline with `checks`; returns seconds.
async fn run(name: &str, msgs: &[Vec<u8>], checks: Option<Vec<Arc<dyn Check>>>) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    // Scan every message with every scanner, as the reference programs do.
    cfg.scan.spam_max_size = u64::MAX;
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let spool = Spool::open(&cfg).expect("spool");
    let mut ld = LocalDelivery::new(Arc::new(cfg.clone()), spool);
    if let Some(checks) = checks {
        let scanner = Scanner::with_checks(checks, &cfg.scan, &cfg.hostname).unwrap();
        let hook: Arc<dyn ScanStage> = Arc::new(ScanHook::new(&cfg, scanner));
        ld = ld.with_scan(hook);
    }
    let filter: Arc<dyn FilterStage> = Arc::new(SieveHook::new(&cfg));
    ld = ld.with_filter(filter);
    let start = Instant::now();
    let mut delivered = 0;
    for (b, chunk) in msgs.chunks(BATCH).enumerate() {
        let batch = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| incoming(b * BATCH + i, m))
            .collect();
        for r in ld.deliver_batch(batch).await {
            assert!(r.is_final(), "{name}: {:?}", r.outcomes);
            delivered += r.outcomes.iter().filter(|(_, o)| o.is_delivered()).count();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(delivered, msgs.len(), "{name}: every message accounted for");
    secs
}

/// Runs `argv` once per message file (stdin = the message); returns seconds.
fn per_message(argv: &[&str], files: &[PathBuf]) -> f64 {
    let start = Instant::now();
    for f in files {
        let st = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(std::fs::File::open(f).unwrap())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.code().is_some(), "{argv:?} crashed");
    }
    start.elapsed().as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let Some(interop) = interop_dir() else {
        println!("skipped: ../shared/interop/gen_messages.py not found");
        return;
    };
    if !have("python3") {
        println!("skipped: python3 not installed");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let md = work.path().join("msgs");
    let st = Command::new("python3")
        .arg(interop.join("gen_messages.py"))
        .args([
            "--maildir",
            md.to_str().unwrap(),
            "--user",
            "bouke",
            "--mix",
            "mixed",
        ])
        .args(["--count", &n.to_string()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "gen_messages.py failed");
    let mut files: Vec<PathBuf> = std::fs::read_dir(md.join("cur"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let msgs: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let total: usize = msgs.iter().map(Vec::len).sum();
    println!(
        "{} messages, {:.1} MB, batches of {BATCH}",
        msgs.len(),
        total as f64 / 1e6
    );

    // clamd from the shared script, on its own port and folder.
    let clamd_dir = work.path().join("clamd");
    let clamd_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let clamd = have("clamd")
        && Command::new("bash")
            .arg(interop.join("start-clamd.sh"))
            .arg(&clamd_dir)
            .env("CLAMD_PORT", clamd_port.to_string())
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    let clamd_spec = format!("unix:{}", clamd_dir.join("clamd.sock").display());

    // bogofilter trained on 100 of the messages as ham and 100 made-up spams.
    let bogo_dir = work.path().join("bogofilter");
    let bogo = have("bogofilter").then(|| {
        std::fs::create_dir_all(&bogo_dir).unwrap();
        for f in files.iter().take(100) {
            Command::new("bogofilter")
                .arg("-d")
                .arg(&bogo_dir)
                .arg("-n")
                .stdin(std::fs::File::open(f).unwrap())
                .status()
                .unwrap();
        }
        for i in 0..100 {
            let spam = format!(
                "From: win{i}@lottery.example\nSubject: You are a winner {i}\n\n\
                 Claim your unclaimed lottery prize now, cheap pills casino bonus {i}\n"
            );
            let mut c = Command::new("bogofilter")
                .arg("-d")
                .arg(&bogo_dir)
                .arg("-s")
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            c.stdin.take().unwrap().write_all(spam.as_bytes()).unwrap();
            c.wait().unwrap();
        }
        Bogofilter::new("bogofilter", bogo_dir.clone())
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows: Vec<(&str, f64)> = Vec::new();
    rt.block_on(async {
        // Warm-up (page cache, allocator), not counted.
        run("warm-up", &msgs, None).await;
        rows.push(("plain", run("plain", &msgs, None).await));
        rows.push((
            "banned",
            run("banned", &msgs, Some(vec![Arc::new(Banned::default())])).await,
        ));
        if clamd {
            let c: Arc<dyn Check> = Arc::new(Clamd::parse(&clamd_spec, 25 << 20).unwrap());
            rows.push(("clamd", run("clamd", &msgs, Some(vec![c])).await));
        } else {
            println!("skipped clamd rows: clamd not available");
        }
        if let Some(b) = &bogo {
            let c: Arc<dyn Check> = Arc::new(b.clone());
            rows.push(("bogofilter", run("bogofilter", &msgs, Some(vec![c])).await));
        } else {
            println!("skipped bogofilter rows: bogofilter not installed");
        }
        if clamd && bogo.is_some() {
            let all: Vec<Arc<dyn Check>> = vec![
                Arc::new(Banned::default()),
                Arc::new(Clamd::parse(&clamd_spec, 25 << 20).unwrap()),
                Arc::new(bogo.clone().unwrap()),
            ];
            rows.push((
                "banned+clamd+bogofilter",
                run("all", &msgs, Some(all)).await,
            ));
        }
        // Plain again at the end: the baseline is the faster of the two runs, so
        // machine noise does not show up as negative overhead.
        let again = run("plain", &msgs, None).await;
        rows[0].1 = rows[0].1.min(again);
    });

    let n = msgs.len() as f64;
    let plain = rows[0].1;
    println!(
        "\n{:<26} {:>9} {:>10} {:>12} {:>14}",
        "configuration", "seconds", "msg/s", "ms/msg", "overhead ms"
    );
    for (name, secs) in &rows {
        println!(
            "{:<26} {:>9.2} {:>10.0} {:>12.3} {:>14.3}",
            name,
            secs,
            n / secs,
            secs * 1e3 / n,
            (secs - plain) * 1e3 / n
        );
    }

    // Reference programs over the same files, one process per message.
    println!("\nreference programs (one process per message, same files):");
    if clamd {
        let conf = clamd_dir.join("clamd.conf");
        let conf_arg = format!("--config-file={}", conf.display());
        let secs = per_message(
            &["clamdscan", &conf_arg, "--stream", "--no-summary", "-"],
            &files,
        );
        let ours = rows.iter().find(|r| r.0 == "clamd").unwrap().1 - plain;
        println!(
            "  clamdscan --stream: {:.3} ms/msg; zolder's clamd overhead / clamdscan = {:.2}",
            secs * 1e3 / n,
            ours / secs
        );
    }
    if bogo.is_some() {
        let d = bogo_dir.to_str().unwrap();
        let secs = per_message(&["bogofilter", "-d", d], &files);
        let ours = rows.iter().find(|r| r.0 == "bogofilter").unwrap().1 - plain;
        println!(
            "  bogofilter:         {:.3} ms/msg; zolder's bogofilter overhead / bogofilter = {:.2}",
            secs * 1e3 / n,
            ours / secs
        );
    }
    if clamd {
        let _ = Command::new("bash")
            .arg(interop.join("stop-clamd.sh"))
            .arg(&clamd_dir)
            .stdout(Stdio::null())
            .status();
    }
}
