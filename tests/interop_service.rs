//! The service layout, for real: a `zolder` system user owns data_dir (mode 0750), the
//! daemon runs as that user — started under `setpriv` (systemd's `User=zolder`) and
//! started as root with `user = "zolder"` (the privilege drop) — and mail is injected
//! with `sendmail` by root, by `zolder` and by a third local user, who has no access to
//! data_dir and goes through the setgid `zolder-postdrop`. Each message must arrive
//! exactly once, and the daemon must never log "Permission denied".
//!
//! Needs root (it creates the users with useradd) and setpriv; skips otherwise.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const THIRD: &str = "zoldermate";

fn ensure_user(name: &str) {
    if nix::unistd::User::from_name(name).unwrap().is_none() {
        let st = Command::new("useradd")
            .args(["-r", "-M", "-s", "/usr/sbin/nologin", name])
            .status()
            .unwrap();
        assert!(st.success(), "useradd {name}");
    }
}

fn skip_reason() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root");
    }
    if Command::new("setpriv").arg("--version").output().is_err() {
        return Some("setpriv not installed");
    }
    None
}

/// `setpriv` as `user` (its own group, no supplementary groups), or plain for root.
fn as_user(user: &str, prog: &Path) -> Command {
    if user == "root" {
        return Command::new(prog);
    }
    let mut c = Command::new("setpriv");
    c.args(["--reuid", user, "--regid", user, "--clear-groups"])
        .arg(prog);
    c
}

struct Layout {
    base: tempfile::TempDir,
    bin: PathBuf,
    cfg: PathBuf,
    data: PathBuf,
}

/// Binary + setgid helper, a config readable by everyone, data_dir 0750 zolder:zolder.
fn layout(extra: &str) -> Layout {
    let zolder = nix::unistd::User::from_name("zolder").unwrap().unwrap();
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let bindir = base.path().join("bin");
    std::fs::create_dir(&bindir).unwrap();
    std::fs::set_permissions(&bindir, PermissionsExt::from_mode(0o755)).unwrap();
    let bin = bindir.join("zolder");
    std::fs::copy(env!("CARGO_BIN_EXE_zolder"), &bin).unwrap();
    std::fs::set_permissions(&bin, PermissionsExt::from_mode(0o755)).unwrap();
    // install -o root -g zolder -m 2755 zolder zolder-postdrop
    let helper = bindir.join("zolder-postdrop");
    std::fs::copy(&bin, &helper).unwrap();
    nix::unistd::chown(&helper, Some(0.into()), Some(zolder.gid)).unwrap();
    std::fs::set_permissions(&helper, PermissionsExt::from_mode(0o2755)).unwrap();
    let data = base.path().join("data");
    std::fs::create_dir(&data).unwrap();
    nix::unistd::chown(&data, Some(zolder.uid), Some(zolder.gid)).unwrap();
    std::fs::set_permissions(&data, PermissionsExt::from_mode(0o750)).unwrap();
    let cfg = base.path().join("zolder.toml");
    std::fs::write(
        &cfg,
        format!(
            "{extra}hostname = \"zolder.thuis\"\ndata_dir = \"data\"\nlocal_domains = [\"zolder.thuis\"]\n\
             postmaster = \"bouke\"\n\n[[users]]\nname = \"bouke\"\naddresses = [\"bouke@zolder.thuis\"]\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, PermissionsExt::from_mode(0o644)).unwrap();
    Layout {
        base,
        bin,
        cfg,
        data,
    }
}

fn inject(l: &Layout, user: &str, subject: &str) {
    let mut c = as_user(user, &l.bin)
        .env_remove("ZOLDER_CONFIG")
        .arg("--config")
        .arg(&l.cfg)
        .args(["sendmail", "bouke"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("Subject: {subject}\n\nfrom {user}\n").as_bytes())
        .unwrap();
    let out = c.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "sendmail as {user}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Subjects of every message in bouke's INBOX.
fn delivered(l: &Layout) -> Vec<String> {
    let new = l.data.join("mail/bouke/Maildir/new");
    let cur = l.data.join("mail/bouke/Maildir/cur");
    let mut out = Vec::new();
    for d in [new, cur] {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let t = std::fs::read_to_string(e.path()).unwrap_or_default();
            if let Some(s) = t.lines().find_map(|l| l.strip_prefix("Subject: ")) {
                out.push(s.trim().to_string());
            }
        }
    }
    out.sort();
    out
}

fn stop(mut child: Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = child.wait();
}

fn run_layout(l: &Layout, daemon: Command, tag: &str) {
    let log_path = l.base.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut daemon = daemon;
    let child = daemon
        .env_remove("ZOLDER_CONFIG")
        .arg("--config")
        .arg(&l.cfg)
        .arg("serve")
        .stderr(log)
        .spawn()
        .unwrap();
    // Wait for the daemon (its control socket) before injecting, then inject as each.
    let sock = l.data.join("queue/control.sock");
    let t0 = Instant::now();
    while !sock.exists() && t0.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        sock.exists(),
        "{}",
        std::fs::read_to_string(&log_path).unwrap()
    );
    let want: Vec<String> = ["root", "zolder", THIRD]
        .iter()
        .map(|u| format!("{tag} from {u}"))
        .collect();
    for (u, s) in ["root", "zolder", THIRD].iter().zip(&want) {
        inject(l, u, s);
    }
    let t0 = Instant::now();
    while delivered(l).len() < 3 && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Past two maildrop pickup rounds: nothing arrives twice.
    std::thread::sleep(Duration::from_secs(11));
    stop(child);
    let text = std::fs::read_to_string(&log_path).unwrap();
    let mut want = want;
    want.sort();
    assert_eq!(delivered(l), want, "each exactly once\n{text}");
    assert!(!text.contains("Permission denied"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("picked up from maildrop") && l.contains(THIRD)),
        "the third user's mail came through the maildrop: {text}"
    );
    // Everything in data_dir belongs to the daemon's user (the maildrop files that
    // were the callers' are gone).
    let zolder = nix::unistd::User::from_name("zolder").unwrap().unwrap();
    for e in walk(&l.data) {
        let m = std::fs::symlink_metadata(&e).unwrap();
        assert_eq!(
            m.uid(),
            zolder.uid.as_raw(),
            "{} is not zolder's",
            e.display()
        );
    }
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn service_layout_injection_by_root_zolder_and_a_third_user() {
    if let Some(why) = skip_reason() {
        eprintln!("skipped: {why}");
        return;
    }
    ensure_user("zolder");
    ensure_user(THIRD);

    // systemd's User=zolder: the daemon is started as zolder.
    let l = layout("");
    let d = as_user("zolder", &l.bin);
    run_layout(&l, d, "setpriv");

    // Started as root, it drops to `user = "zolder"` itself.
    let l = layout("user = \"zolder\"\n");
    let d = Command::new(&l.bin);
    run_layout(&l, d, "dropped");
}
