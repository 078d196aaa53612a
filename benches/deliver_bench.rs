//! Local delivery throughput against a reference writer, measured in the same run.
//!
//! Generates 10 000 mixed messages with `../shared/interop/gen_messages.py` (text,
//! HTML, attachments up to 2 MB), loads them into memory, then delivers them:
//! * **reference**: the qmail way, as `maildir-deliver.c` does — write `tmp/<unique>`,
//!   fsync the file, rename into `new/`: one fsync per message, no index, no headers;
//! * **zolder**: the full pipeline in-process (`LocalDelivery::deliver_batch`: header
//!   parse, routing, trace headers, Maildir write + fsync per file, one directory
//!   fsync and one SQLite transaction per batch).
//!
//! Prints msgs/s, MB/s and zolder/reference. Goal: ≥ 0.90.
//!
//! ```text
//! cargo bench --bench deliver_bench
//! DELIVER_BENCH_MESSAGES=2000 DELIVER_BENCH_BATCH=50 cargo bench --bench deliver_bench
//! ```
//! `SHARED_DIR` points at the shared folder if it is not `../shared`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use zolder::config::Config;
use zolder::deliver::LocalDelivery;
use zolder::message::{Deliver, Envelope, Incoming, RawMessage, Source};
use zolder::spool::Spool;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn generator() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut candidates = Vec::new();
    if let Some(s) = std::env::var_os("SHARED_DIR") {
        candidates.push(PathBuf::from(s).join("interop/gen_messages.py"));
    }
    candidates.push(manifest.join("../shared/interop/gen_messages.py"));
    candidates.push(PathBuf::from("/work/shared/interop/gen_messages.py"));
    candidates
        .into_iter()
        .find(|p| p.exists())
        .expect("gen_messages.py not found: set SHARED_DIR to the shared folder")
}

fn sync_all() {
    nix::unistd::sync();
}

/// The reference: tmp → fsync → rename into new/, one message at a time.
fn reference(msgs: &[Vec<u8>], dir: &Path) -> f64 {
    for d in ["tmp", "new", "cur"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    let host = "bench";
    let pid = std::process::id();
    sync_all();
    let t = Instant::now();
    for (i, m) in msgs.iter().enumerate() {
        let name = format!("{}.P{pid}Q{i}.{host}", 1_700_000_000 + i);
        let tmp = dir.join("tmp").join(&name);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .unwrap();
        f.write_all(m).unwrap();
        f.sync_all().unwrap();
        drop(f);
        fs::rename(&tmp, dir.join("new").join(&name)).unwrap();
    }
    t.elapsed().as_secs_f64()
}

fn zolder_run(msgs: &[Vec<u8>], root: &Path, batch: usize) -> f64 {
    fs::create_dir_all(root).unwrap();
    let toml = "hostname = \"bench.zolder\"\ndata_dir = \"data\"\nlocal_domains = [\"zolder.test\"]\npostmaster = \"bench\"\n[[users]]\nname = \"bench\"\naddresses = [\"bench@zolder.test\"]\n";
    let path = root.join("zolder.toml");
    fs::write(&path, toml).unwrap();
    let cfg = Config::from_str_at(toml, &path, false).unwrap();
    let spool = Spool::open(&cfg).unwrap();
    spool.prepare_user("bench").unwrap();
    let ld = LocalDelivery::new(Arc::new(cfg), spool);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    sync_all();
    let t = Instant::now();
    rt.block_on(async {
        for (b, chunk) in msgs.chunks(batch).enumerate() {
            let incoming: Vec<Incoming> = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let mut env = Envelope::new(
                        Some("sender@isp.example".into()),
                        vec!["bench".into()],
                        Source::Fetch {
                            account: "bench".into(),
                            protocol: "pop3".into(),
                            host: "pop.isp.example".into(),
                        },
                    );
                    env.idempotency_key = Some(format!("pop3:bench:{}", b * batch + i));
                    Incoming {
                        envelope: env,
                        message: RawMessage::new(m.clone()),
                    }
                })
                .collect();
            for r in ld.deliver_batch(incoming).await {
                assert!(r.all_delivered(), "{r:?}");
            }
        }
    });
    t.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test --benches` run passes nothing
    // and should not spend minutes here.
    if !std::env::args().any(|a| a == "--bench") {
        println!("deliver_bench: run with `cargo bench --bench deliver_bench`");
        return;
    }
    let n = env_usize("DELIVER_BENCH_MESSAGES", 10_000);
    let batch = env_usize("DELIVER_BENCH_BATCH", 100);
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("deliver_bench");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).unwrap();

    let src = work.join("src");
    let status = Command::new("python3")
        .arg(generator())
        .args(["--maildir"])
        .arg(&src)
        .args([
            "--user",
            "bench",
            "--count",
            &n.to_string(),
            "--mix",
            "mixed",
            "--seed",
            "7",
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("python3");
    assert!(status.success(), "gen_messages.py failed");
    let mut files: Vec<PathBuf> = fs::read_dir(src.join("cur"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let msgs: Vec<Vec<u8>> = files.iter().map(|p| fs::read(p).unwrap()).collect();
    let bytes: usize = msgs.iter().map(Vec::len).sum();
    let mb = bytes as f64 / 1e6;
    println!(
        "deliver_bench: {} messages, {:.1} MB, zolder batch {batch}",
        msgs.len(),
        mb
    );

    // Reference, zolder, reference again: the mean of the two references evens out
    // drift in a shared machine's disk.
    let r1 = reference(&msgs, &work.join("ref1"));
    let z = zolder_run(&msgs, &work.join("zolder"), batch);
    let r2 = reference(&msgs, &work.join("ref2"));
    let r = (r1 + r2) / 2.0;
    let n = msgs.len() as f64;
    println!(
        "reference (write+fsync+rename per message): {:>8.0} msgs/s {:>7.1} MB/s  ({r1:.2} s, {r2:.2} s)",
        n / r,
        mb / r
    );
    println!(
        "zolder (LocalDelivery::deliver_batch):      {:>8.0} msgs/s {:>7.1} MB/s  ({z:.2} s)",
        n / z,
        mb / z
    );
    println!("ratio zolder/reference: {:.2}", r / z);

    // Everything arrived and is indexed.
    let p = work.join("zolder/zolder.toml");
    let cfg = Config::from_str_at(&fs::read_to_string(&p).unwrap(), &p, false).unwrap();
    let spool = Spool::open(&cfg).unwrap();
    let st = spool.select("bench", "INBOX").unwrap();
    assert_eq!(st.messages.len(), msgs.len());
    drop(File::open(&work).ok());
    let _ = fs::remove_dir_all(&work);
}
