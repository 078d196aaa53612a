//! Test helpers shared by the fetch tests: a `Deliver` that writes each recipient's
//! copy into `<root>/<user>/Maildir/new` the durable way (tmp, fsync, rename, fsync
//! dir) and honours the idempotency key, standing in for the real pipeline; a config
//! builder; and the Dovecot "ISP" from `../shared/interop`.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use zolder::message::{Deliver, DeliveryReport, Incoming, RcptOutcome};

/// Durable Maildir delivery with exactly-once keys (in memory: one process).
pub struct MaildirDeliver {
    pub root: PathBuf,
    keys: Mutex<HashSet<(String, String)>>,
    pub stored: AtomicUsize,
    pub calls: AtomicUsize,
    /// Recipients whose delivery fails temporarily.
    pub tempfail: Mutex<HashSet<String>>,
    seq: AtomicUsize,
}

impl MaildirDeliver {
    pub fn new(root: &Path) -> MaildirDeliver {
        MaildirDeliver {
            root: root.to_path_buf(),
            keys: Mutex::default(),
            stored: AtomicUsize::new(0),
            calls: AtomicUsize::new(0),
            tempfail: Mutex::default(),
            seq: AtomicUsize::new(0),
        }
    }

    pub fn maildir(&self, user: &str) -> PathBuf {
        self.root.join(user).join("Maildir")
    }

    /// Files in a user's Maildir/new.
    pub fn count(&self, user: &str) -> usize {
        std::fs::read_dir(self.maildir(user).join("new"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    fn store(&self, user: &str, bytes: &[u8]) -> std::io::Result<()> {
        let md = self.maildir(user);
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(md.join(sub))?;
        }
        let name = format!(
            "{}.{}.test",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::SeqCst)
        );
        let tmp = md.join("tmp").join(&name);
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, md.join("new").join(&name))?;
        std::fs::File::open(md.join("new"))?.sync_all()?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Deliver for MaildirDeliver {
    async fn deliver_batch(&self, msgs: Vec<Incoming>) -> Vec<DeliveryReport> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut out = Vec::new();
        for m in msgs {
            let mut r = DeliveryReport::default();
            for rc in &m.envelope.recipients {
                if self.tempfail.lock().unwrap().contains(rc) {
                    r.outcomes.push((
                        rc.clone(),
                        RcptOutcome::TempFail("test: mailbox busy".into()),
                    ));
                    continue;
                }
                let key = m.envelope.idempotency_key.clone().unwrap_or_default();
                let fresh = key.is_empty()
                    || !self
                        .keys
                        .lock()
                        .unwrap()
                        .contains(&(key.clone(), rc.clone()));
                if fresh {
                    if let Err(e) = self.store(rc, &m.message.bytes) {
                        r.outcomes
                            .push((rc.clone(), RcptOutcome::TempFail(e.to_string())));
                        continue;
                    }
                    self.stored.fetch_add(1, Ordering::SeqCst);
                    self.keys.lock().unwrap().insert((key, rc.clone()));
                }
                r.outcomes.push((rc.clone(), RcptOutcome::Delivered));
            }
            out.push(r);
        }
        out
    }
}

/// A config in `dir` with users `users` and the accounts given as TOML.
pub fn config(dir: &Path, users: &[&str], accounts_toml: &str) -> zolder::config::Config {
    let mut text = format!(
        "hostname = \"zolder.test\"\ndata_dir = \"data\"\npostmaster = \"{}\"\n",
        users[0]
    );
    for u in users {
        text.push_str(&format!("[[users]]\nname = \"{u}\"\n"));
    }
    text.push_str(accounts_toml);
    let path = dir.join("zolder.toml");
    std::fs::write(&path, &text).unwrap();
    zolder::config::Config::from_str_at(&text, &path, false).unwrap()
}

/// The shared interop scripts, if this checkout has them.
pub fn interop_dir() -> Option<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("ZOLDER_INTEROP_DIR").map(PathBuf::from),
        Some(manifest.join("../shared/interop")),
        Some(manifest.join("../../shared/interop")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("start-isp.sh").exists())
}

/// A free TCP port on loopback (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private Dovecot acting as the ISP; stopped on drop.
pub struct Isp {
    pub dir: PathBuf,
    pub scripts: PathBuf,
    pub pop3: u16,
    pub imap: u16,
    pub pop3s: u16,
    pub imaps: u16,
    _keep: tempfile::TempDir,
}

impl Isp {
    /// Starts Dovecot, or prints why not and returns None (no Dovecot, not root, no
    /// interop scripts). `tls`: (cert PEM, key PEM) for STARTTLS and implicit TLS.
    pub fn start(tls: Option<(&str, &str)>) -> Option<Isp> {
        // Under tests/interop/run.sh (ZOLDER_INTEROP=1) a missing peer is a failure.
        let skip = |why: &str| {
            assert!(
                std::env::var_os("ZOLDER_INTEROP").is_none(),
                "ZOLDER_INTEROP is set but {why}"
            );
            println!("skipped: {why}");
        };
        if !Path::new("/usr/sbin/dovecot").exists() {
            skip("dovecot not installed");
            return None;
        }
        if !nix::unistd::geteuid().is_root() {
            skip("interop tests need root (dovecot as the ISP)");
            return None;
        }
        let Some(scripts) = interop_dir() else {
            skip("../shared/interop not found (set ZOLDER_INTEROP_DIR)");
            return None;
        };
        let keep = tempfile::Builder::new()
            .prefix("zolder-isp")
            .tempdir_in("/tmp")
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(keep.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = keep.path().join("isp");
        let (pop3, imap, pop3s, imaps) = (free_port(), free_port(), free_port(), free_port());
        let mut cmd = Command::new(scripts.join("start-isp.sh"));
        cmd.env("ISP_DIR", &dir)
            .env("ISP_POP3_PORT", pop3.to_string())
            .env("ISP_IMAP_PORT", imap.to_string())
            .env("ISP_POP3S_PORT", pop3s.to_string())
            .env("ISP_IMAPS_PORT", imaps.to_string())
            .env("ISP_USERS", "alice bob carol dave");
        if let Some((cert, key)) = tls {
            let c = keep.path().join("isp-cert.pem");
            let k = keep.path().join("isp-key.pem");
            std::fs::write(&c, cert).unwrap();
            std::fs::write(&k, key).unwrap();
            cmd.env("ISP_TLS_CERT", &c).env("ISP_TLS_KEY", &k);
        }
        // Dovecot inherits stdout/stderr: files, not pipes, or we would wait for it.
        let log = keep.path().join("start-isp.log");
        let f = std::fs::File::create(&log).unwrap();
        cmd.stdout(std::process::Stdio::null()).stderr(f);
        let st = cmd.status().unwrap();
        assert!(
            st.success(),
            "start-isp.sh: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Some(Isp {
            dir,
            scripts,
            pop3,
            imap,
            pop3s,
            imaps,
            _keep: keep,
        })
    }

    /// `populate.sh USER N MIX` (fresh mailbox).
    pub fn populate(&self, user: &str, n: usize, mix: &str) {
        let out = Command::new(self.scripts.join("populate.sh"))
            .args([user, &n.to_string(), mix])
            .env("ISP_DIR", &self.dir)
            .env("RESET", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "populate.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Appends more messages without resetting (Message-IDs continue).
    pub fn populate_more(&self, user: &str, n: usize, mix: &str) {
        let out = Command::new(self.scripts.join("populate.sh"))
            .args([user, &n.to_string(), mix])
            .env("ISP_DIR", &self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "populate.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn doveadm(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let mut c = Command::new("doveadm");
        c.arg("-c").arg(self.dir.join("dovecot.conf")).args(args);
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        {
            let mut si = child.stdin.take().unwrap();
            if let Some(b) = stdin {
                si.write_all(b).unwrap();
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "doveadm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Messages in USER's FOLDER at the ISP.
    pub fn count(&self, user: &str, folder: &str) -> usize {
        let s = self.doveadm(
            &[
                "-f", "flow", "mailbox", "status", "-u", user, "messages", folder,
            ],
            None,
        );
        let digits: String = s
            .rsplit('=')
            .next()
            .unwrap_or("")
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("doveadm mailbox status: `{s}`"))
    }

    pub fn manifest(&self, user: &str) -> PathBuf {
        self.dir.join("manifests").join(format!("{user}.tsv"))
    }

    /// verify-maildir.py against the manifest: Ok or the script's report.
    pub fn verify(&self, maildir: &Path, expected: usize, user: &str) -> Result<(), String> {
        let out = Command::new("python3")
            .arg(self.scripts.join("verify-maildir.py"))
            .arg(maildir)
            .arg(expected.to_string())
            .arg("--manifest")
            .arg(self.manifest(user))
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for Isp {
    fn drop(&mut self) {
        let _ = Command::new(self.scripts.join("stop-isp.sh"))
            .env("ISP_DIR", &self.dir)
            .output();
    }
}
