//! The Dovecot "ISP" from `../shared/interop/start-isp.sh`: POP3 and IMAP (optionally
//! with STARTTLS and implicit TLS) on free ports, users alice bob carol dave.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::peers::{free_port, interop_dir};

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
