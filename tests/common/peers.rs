//! Finding programs and ports, and the peers started from `../shared/interop`: the
//! recording smarthost (`smarthost.py`, Debian's aiosmtpd) and clamd
//! (`start-clamd.sh`/`stop-clamd.sh`). Each is a small builder stopped on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Whether `prog` is installed: on `$PATH` or in one of the usual bin/sbin folders
/// (tests also run as a user whose PATH lacks sbin, where clamd and dovecot live).
pub fn have(prog: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .chain(
            [
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
                "/usr/local/bin",
                "/usr/local/sbin",
            ]
            .map(PathBuf::from),
        )
        .any(|d| d.join(prog).is_file())
}

/// A free TCP port on loopback (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shared interop scripts: `ZOLDER_INTEROP_DIR`, else `shared/interop` in the
/// crate root's parent or any folder above it (a git worktree lives deeper).
pub fn interop_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("ZOLDER_INTEROP_DIR") {
        return Some(PathBuf::from(d));
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/interop"))
        .find(|p| p.join("start-isp.sh").exists())
}

/// `smarthost.py`: an SMTP server that records every accepted message as a file in its
/// sink folder, with AUTH and STARTTLS when asked and fault injection by recipient name.
#[derive(Default)]
pub struct SmarthostBuilder {
    auth: Option<String>,
    tls: Option<(PathBuf, PathBuf)>,
}

impl SmarthostBuilder {
    /// Requires AUTH with `user:password`.
    pub fn auth(mut self, user_pass: &str) -> Self {
        self.auth = Some(user_pass.into());
        self
    }
    /// Offers STARTTLS with this certificate and key and refuses MAIL before it.
    pub fn require_tls(mut self, cert: &Path, key: &Path) -> Self {
        self.tls = Some((cert.into(), key.into()));
        self
    }
    /// Starts it on a port of its choosing, recording into `<dir>/sink`.
    pub fn start(self, dir: &Path) -> Smarthost {
        let script = interop_dir()
            .expect("../shared/interop not found (set ZOLDER_INTEROP_DIR)")
            .join("smarthost.py");
        let sink = dir.join("sink");
        let portfile = dir.join("sh.port");
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(script)
            .args(["--port", "0", "--portfile"])
            .arg(&portfile)
            .arg("--dir")
            .arg(&sink);
        if let Some(a) = &self.auth {
            cmd.args(["--auth", a]);
        }
        if let Some((cert, key)) = &self.tls {
            cmd.args(["--require-tls", "--tls-cert"])
                .arg(cert)
                .arg("--tls-key")
                .arg(key);
        }
        let mut child = cmd.stdout(Stdio::null()).spawn().unwrap();
        for _ in 0..100 {
            if let Ok(p) = std::fs::read_to_string(&portfile)
                && let Ok(port) = p.trim().parse()
            {
                std::thread::sleep(Duration::from_millis(200));
                return Smarthost {
                    child,
                    port,
                    dir: sink,
                };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("smarthost.py did not start");
    }
}

/// A running `smarthost.py`; killed on drop.
pub struct Smarthost {
    child: Child,
    pub port: u16,
    /// The sink folder: one file per accepted message.
    pub dir: PathBuf,
}

impl Smarthost {
    /// The recorded messages, oldest file name first.
    pub fn messages(&self) -> Vec<String> {
        let mut v: Vec<_> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v.into_iter()
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned())
            .collect()
    }
    pub fn builder() -> SmarthostBuilder {
        SmarthostBuilder::default()
    }
    /// Why the smarthost cannot run here (no script, no python3-aiosmtpd), if so.
    pub fn missing() -> Option<String> {
        let Some(dir) = interop_dir() else {
            return Some("../shared/interop not found (set ZOLDER_INTEROP_DIR)".into());
        };
        let script = dir.join("smarthost.py");
        if !script.exists() {
            return Some(format!("{} not found", script.display()));
        }
        let ok = Command::new("/usr/bin/python3")
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Some("python3-aiosmtpd not installed".into());
        }
        None
    }
}

impl Drop for Smarthost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A clamd run by the shared scripts in its own folder on a free TCP port (and a unix
/// socket); stopped on drop. `prepare` leaves it down so a test can start it later.
pub struct ClamdServer {
    scripts: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl ClamdServer {
    /// A clamd ready to start, or None (printing why) without clamd or the scripts.
    pub fn prepare() -> Option<ClamdServer> {
        if !have("clamd") {
            println!("skipped: clamd not installed");
            return None;
        }
        let Some(scripts) = interop_dir() else {
            println!("skipped: ../shared/interop not found");
            return None;
        };
        Some(ClamdServer {
            scripts,
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
        })
    }
    /// `prepare` and `up`.
    pub fn start() -> Option<ClamdServer> {
        let c = Self::prepare()?;
        c.up();
        Some(c)
    }
    /// Runs `start-clamd.sh` (waits until it answers).
    pub fn up(&self) {
        let st = self.script("start-clamd.sh").status().unwrap();
        assert!(st.success(), "start-clamd.sh failed");
    }
    /// Runs `stop-clamd.sh`.
    pub fn down(&self) {
        let _ = self.script("stop-clamd.sh").status();
    }
    fn script(&self, name: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg(self.scripts.join(name))
            .arg(self.dir.path())
            .env("CLAMD_PORT", self.port.to_string())
            .stdout(Stdio::null());
        c
    }
    pub fn unix(&self) -> String {
        format!("unix:{}", self.dir.path().join("clamd.sock").display())
    }
    pub fn tcp(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.port)
    }
}

impl Drop for ClamdServer {
    fn drop(&mut self) {
        self.down();
    }
}
