//! The zolder daemon in-process, listeners on port 0, in a few lines:
//!
//! ```ignore
//! let srv = Zolder::new("zolder.test").listen("imap").user("bouke", PASSWORD, &[]).start().await;
//! connect(srv.addr("imap"));
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use zolder::daemon::Running;

/// Builds `zolder.toml` (hostname, `data_dir = "data"`, extra top-level lines, the
/// listeners, the users) and starts the daemon from it.
pub struct Zolder {
    hostname: String,
    top: Vec<String>,
    listen: Vec<String>,
    users: Vec<String>,
    dir: Option<PathBuf>,
}

impl Zolder {
    pub fn new(hostname: &str) -> Zolder {
        Zolder {
            hostname: hostname.into(),
            top: Vec::new(),
            listen: Vec::new(),
            users: Vec::new(),
            dir: None,
        }
    }
    /// A top-level config line, e.g. `postmaster = "bouke"`.
    pub fn top(mut self, line: &str) -> Self {
        self.top.push(line.into());
        self
    }
    /// A listener (`imap`, `pop3`, `pop3s`, ...) on 127.0.0.1, port 0.
    pub fn listen(mut self, name: &str) -> Self {
        self.listen.push(format!("{name} = \"127.0.0.1:0\""));
        self
    }
    /// A user with this password (argon2id-hashed into the config) and addresses.
    pub fn user(mut self, name: &str, password: &str, addresses: &[&str]) -> Self {
        let hash = zolder::auth::hash_password(password).unwrap();
        let mut u = format!("[[users]]\nname = \"{name}\"\n");
        if !addresses.is_empty() {
            let list: Vec<String> = addresses.iter().map(|a| format!("\"{a}\"")).collect();
            u.push_str(&format!("addresses = [{}]\n", list.join(", ")));
        }
        u.push_str(&format!("password_hash = \"{hash}\"\n"));
        self.users.push(u);
        self
    }
    /// Puts `zolder.toml` and `data/` in `dir` instead of a fresh temporary folder.
    pub fn in_dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.into());
        self
    }
    /// The config text as written.
    pub fn text(&self) -> String {
        let mut t = format!("hostname = \"{}\"\ndata_dir = \"data\"\n", self.hostname);
        for l in &self.top {
            t.push_str(l);
            t.push('\n');
        }
        if !self.listen.is_empty() {
            t.push_str("[listen]\n");
            for l in &self.listen {
                t.push_str(l);
                t.push('\n');
            }
        }
        for u in &self.users {
            t.push_str(u);
        }
        t
    }
    pub async fn start(self) -> Server {
        let (tmp, root) = match &self.dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::tempdir().unwrap();
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let path = root.join("zolder.toml");
        std::fs::write(&path, self.text()).unwrap();
        let cfg = zolder::config::Config::load(&path).unwrap();
        let running = zolder::daemon::start(cfg, path.clone()).await.unwrap();
        Server {
            _tmp: tmp,
            root,
            config: path,
            running,
        }
    }
}

/// A running daemon and the folder holding its config and data.
pub struct Server {
    _tmp: Option<tempfile::TempDir>,
    /// The folder with `zolder.toml` and `data/`.
    pub root: PathBuf,
    pub config: PathBuf,
    pub running: Running,
}

impl Server {
    /// The bound address of listener `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.running.addr(name)
    }
    /// Messages in `user`'s `mailbox`.
    pub fn count(&self, user: &str, mailbox: &str) -> usize {
        self.running
            .ctx
            .spool
            .select(user, mailbox)
            .unwrap()
            .messages
            .len()
    }
    pub async fn shutdown(self) {
        self.running.shutdown().await;
    }
}
