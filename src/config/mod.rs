//! The configuration: defaults → `zolder.toml` → `ZOLDER_*` environment (figment).
//!
//! Owns the shape of the config file (a contract: examples, tests and outside checks
//! use these key names), where the file is found, path resolution against the file's
//! folder, and `check`-style validation that names file, key and a hint. It does no
//! network or database I/O. The fetchmailrc parser lives in [`fetchmailrc`].
//!
//! # Security
//! A file holding a secret (inline password, `password_file`, a fetchmailrc) must not
//! be group- or world-readable; [`check_secret_file`] refuses it and names the `chmod`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

pub mod account;
pub mod fetchmailrc;
pub mod inbound;
pub mod queue;
pub mod scan;
pub mod smarthost;
pub mod web;

pub use account::AccountConfig;
pub use queue::{QueueConfig, SubmitConfig};
pub use scan::ScanConfig;
pub use smarthost::SmarthostConfig;
pub use web::{ManageSieveConfig, WebConfig};

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This machine's mail name: `Received:` headers, greetings, Message-IDs.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// Where the database, spools and queue live; relative = against the config's folder.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Domains whose mail is delivered here.
    #[serde(default)]
    pub local_domains: Vec<String>,
    /// Networks that may relay without AUTH.
    #[serde(default)]
    pub lan_networks: Vec<ipnet::IpNet>,
    /// Local user (or address) that gets mail for `postmaster`, bounces and notices.
    #[serde(default = "default_postmaster")]
    pub postmaster: String,
    /// Accounts taken live from a fetchmailrc.
    #[serde(default)]
    pub fetchmailrc: Option<PathBuf>,
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub users: Vec<UserConfig>,
    #[serde(default)]
    pub aliases: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
    #[serde(default)]
    pub smarthost: Option<SmarthostConfig>,
    #[serde(default)]
    pub scan: ScanConfig,
    #[serde(default)]
    pub limits: Limits,
    /// `[queue]`: retry schedule, lifetime, delay warnings of the outgoing queue.
    #[serde(default)]
    pub queue: QueueConfig,
    /// `[submit]`: the LAN SMTP server's policy.
    #[serde(default)]
    pub submit: SubmitConfig,
    /// Allow LOGIN/AUTH in plain text from `lan_networks` (not only over TLS/loopback).
    #[serde(default)]
    pub allow_plaintext_auth: bool,
    /// The account `zolder serve` becomes once its ports are bound, when started as root
    /// (uid/gid of that user, supplementary groups cleared).
    #[serde(default)]
    pub user: Option<String>,
    /// Let `zolder serve` run as root when no `user` is set (refused otherwise).
    #[serde(default)]
    pub allow_root: bool,
    /// Users who may open the web server's `/admin` pages.
    #[serde(default)]
    pub admins: Vec<String>,
    /// `[web]`: webmail sessions and pages.
    #[serde(default)]
    pub web: WebConfig,
    /// `[managesieve]`: script quotas.
    #[serde(default)]
    pub managesieve: ManageSieveConfig,
    /// `[dns]`, `[inbound]`, `[[dkim]]`, `[relay]`: the own domain (issue 17).
    #[serde(default)]
    pub dns: inbound::DnsConfig,
    #[serde(default)]
    pub inbound: inbound::InboundConfig,
    #[serde(default)]
    pub dkim: Vec<inbound::DkimKeyConfig>,
    #[serde(default)]
    pub relay: inbound::RelayConfig,

    /// The file this came from (not a key).
    #[serde(skip)]
    pub path: PathBuf,
}

/// Every top-level key of [`Config`]; `ZOLDER_<KEY>` environment variables are read
/// only for these (a test keeps the list in step with the struct).
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "hostname",
    "data_dir",
    "local_domains",
    "lan_networks",
    "postmaster",
    "fetchmailrc",
    "listen",
    "tls",
    "users",
    "aliases",
    "accounts",
    "smarthost",
    "scan",
    "limits",
    "queue",
    "submit",
    "allow_plaintext_auth",
    "user",
    "allow_root",
    "admins",
    "web",
    "managesieve",
    "dns",
    "inbound",
    "dkim",
    "relay",
];

/// `[listen]`: each key is a `host:port` string or a list of them. Absent = off.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    #[serde(default)]
    pub imap: OneOrMany,
    #[serde(default)]
    pub imaps: OneOrMany,
    #[serde(default)]
    pub pop3: OneOrMany,
    #[serde(default)]
    pub pop3s: OneOrMany,
    #[serde(default)]
    pub submission: OneOrMany,
    #[serde(default)]
    pub smtp: OneOrMany,
    #[serde(default)]
    pub status: OneOrMany,
    /// The web server (webmail, `/admin`), plain HTTP.
    #[serde(default)]
    pub web: OneOrMany,
    /// The same over HTTPS with the LAN certificate.
    #[serde(default)]
    pub webs: OneOrMany,
    /// ManageSieve (RFC 5804; port 4190).
    #[serde(default)]
    pub managesieve: OneOrMany,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::None => vec![],
            OneOrMany::One(s) if s.trim().is_empty() => vec![],
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.iter().filter(|s| !s.trim().is_empty()).cloned().collect(),
        }
    }
}

/// `[tls]`: the LAN certificate. Absent = a self-signed one under `data_dir/tls/`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// `[limits]`: bounds on network input.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest message accepted (bytes), over SMTP, APPEND and from the ISP.
    #[serde(default = "default_message_size")]
    pub message_size: u64,
    /// Simultaneous connections per listener.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Simultaneous connections per client address.
    #[serde(default = "default_max_per_ip")]
    pub max_connections_per_ip: usize,
    /// Simultaneous connections per listener that have not logged in (LAN clients
    /// not counted); when full, the oldest of them is closed for a newcomer.
    #[serde(default = "default_max_preauth")]
    pub max_preauth_connections: usize,
    /// Seconds an IMAP/POP3 client off the LAN has to log in (10 s for an address
    /// whose connections timed out before).
    #[serde(default = "default_login_timeout")]
    pub login_timeout: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            message_size: default_message_size(),
            max_connections: default_max_connections(),
            max_connections_per_ip: default_max_per_ip(),
            max_preauth_connections: default_max_preauth(),
            login_timeout: default_login_timeout(),
        }
    }
}

/// Where a user's INBOX lives.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SpoolKind {
    #[default]
    Maildir,
    Mbox,
}

/// `[[users]]`: a person who gets mail here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub spool: SpoolKind,
    /// An argon2 PHC string; the alternative is `zolder user add` (hash in the database).
    #[serde(default)]
    pub password_hash: Option<String>,
    /// IMAP QUOTA: most bytes (sum of message sizes) over all this user's mailboxes;
    /// APPEND/COPY/MOVE beyond it are refused with `NO [OVERQUOTA]`, and delivery beyond
    /// it is deferred (4.2.2: the ISP keeps it, the queue retries). Absent = none.
    #[serde(default)]
    pub quota_storage: Option<u64>,
    /// IMAP QUOTA: most messages over all this user's mailboxes. Absent = none.
    #[serde(default)]
    pub quota_messages: Option<u64>,
}

fn default_hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/zolder")
}
fn default_postmaster() -> String {
    "postmaster".to_string()
}
fn default_message_size() -> u64 {
    50 * 1024 * 1024
}
fn default_max_connections() -> usize {
    512
}
fn default_max_per_ip() -> usize {
    64
}
fn default_max_preauth() -> usize {
    32
}
fn default_login_timeout() -> u64 {
    60
}

/// An error loading the config: names the file, the key and, where we can find it, the line.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": key `{k}`")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// One problem found by [`Config::validate`].
#[derive(Debug, Clone)]
pub struct Problem {
    pub key: String,
    pub message: String,
    pub hint: Option<String>,
    /// Warnings don't make `zolder check` fail.
    pub warning: bool,
}

impl Problem {
    pub fn error(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            key: key.into(),
            message: message.into(),
            hint: None,
            warning: false,
        }
    }
    pub fn warning(key: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            warning: true,
            ..Problem::error(key, message)
        }
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Problem {
        self.hint = Some(hint.into());
        self
    }
}

/// Where the config file is: `--config`, else `$ZOLDER_CONFIG`, else `./zolder.toml`,
/// else `/etc/zolder/zolder.toml`.
pub fn locate(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("ZOLDER_CONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let local = PathBuf::from("zolder.toml");
    if local.exists() {
        return local;
    }
    PathBuf::from("/etc/zolder/zolder.toml")
}

impl Config {
    /// Loads `path`, then applies `ZOLDER_*` overrides, then resolves relative paths.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
            hint: Some("give the config with --config FILE or $ZOLDER_CONFIG".into()),
        })?;
        Self::from_str_at(&text, path, true)
    }

    /// Parses config text as if read from `path` (for tests: `env` = apply ZOLDER_*).
    pub fn from_str_at(text: &str, path: &Path, env: bool) -> Result<Config, ConfigError> {
        let mut fig = Figment::new().merge(Toml::string(text));
        if env {
            // Only variables naming a real key: ZOLDER_CONFIG is the path, and other
            // ZOLDER_* variables (ZOLDER_BIN in scripts, say) are not config at all.
            fig = fig.merge(
                Env::prefixed("ZOLDER_")
                    .filter(|k| {
                        let top = k.as_str().split("__").next().unwrap_or("");
                        TOP_LEVEL_KEYS.iter().any(|t| t.eq_ignore_ascii_case(top))
                    })
                    .split("__"),
            );
        }
        let mut cfg: Config = fig.extract().map_err(|e| figment_error(e, text, path))?;
        cfg.path = path.to_path_buf();
        let base = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_path_buf());
        cfg.data_dir = resolve_against(&base, &cfg.data_dir);
        if let Some(f) = &cfg.fetchmailrc {
            cfg.fetchmailrc = Some(resolve_against(&base, f));
        }
        if let Some(c) = &cfg.tls.cert {
            cfg.tls.cert = Some(resolve_against(&base, c));
        }
        if let Some(k) = &cfg.tls.key {
            cfg.tls.key = Some(resolve_against(&base, k));
        }
        for a in &mut cfg.accounts {
            a.resolve_paths(&base);
        }
        if let Some(s) = &mut cfg.smarthost {
            s.resolve_paths(&base);
        }
        for k in &mut cfg.dkim {
            k.key_file = resolve_against(&base, &k.key_file);
        }
        Ok(cfg)
    }

    /// The folder relative paths in this config resolve against.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("zolder.db")
    }

    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users
            .iter()
            .find(|u| u.name.eq_ignore_ascii_case(name))
    }

    /// Is `domain` one of ours?
    pub fn is_local_domain(&self, domain: &str) -> bool {
        domain.is_empty()
            || self
                .local_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain))
            || domain.eq_ignore_ascii_case(&self.hostname)
    }

    /// Every problem in this config, each naming its key; `check` prints them.
    pub fn validate(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.hostname.trim().is_empty() || self.hostname.contains(char::is_whitespace) {
            out.push(
                Problem::error("hostname", "not a host name")
                    .hint("e.g. hostname = \"zolder.thuis\""),
            );
        }
        for (i, d) in self.local_domains.iter().enumerate() {
            if d.is_empty() || d.contains(['@', ' ']) {
                out.push(Problem::error(
                    format!("local_domains[{i}]"),
                    format!("`{d}` is not a domain"),
                ));
            }
        }
        for (key, list) in [
            ("listen.imap", &self.listen.imap),
            ("listen.imaps", &self.listen.imaps),
            ("listen.pop3", &self.listen.pop3),
            ("listen.pop3s", &self.listen.pop3s),
            ("listen.submission", &self.listen.submission),
            ("listen.smtp", &self.listen.smtp),
            ("listen.status", &self.listen.status),
        ] {
            for a in list.list() {
                if a.parse::<std::net::SocketAddr>().is_err() {
                    out.push(
                        Problem::error(key, format!("`{a}` is not host:port"))
                            .hint("write an IP address and a port, e.g. \"127.0.0.1:1143\""),
                    );
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let key = format!("users[{i}]");
            if !valid_user_name(&u.name) {
                out.push(
                    Problem::error(
                        format!("{key}.name"),
                        format!("`{}` is not a valid user name", u.name),
                    )
                    .hint("use letters, digits, '.', '-' and '_' only"),
                );
            }
            if !seen.insert(u.name.to_ascii_lowercase()) {
                out.push(Problem::error(
                    format!("{key}.name"),
                    format!("user `{}` is listed twice", u.name),
                ));
            }
            for a in &u.addresses {
                match crate::message::Address::parse(a) {
                    Some(ad) if !ad.is_bare() => {}
                    _ => out.push(Problem::error(
                        format!("{key}.addresses"),
                        format!("`{a}` is not an address"),
                    )),
                }
            }
            if let Some(h) = &u.password_hash
                && !h.starts_with("$argon2")
            {
                out.push(
                    Problem::error(format!("{key}.password_hash"), "not an argon2 PHC string")
                        .hint("make one with `zolder user hash`, or use `zolder user add`"),
                );
            }
        }
        for (name, targets) in &self.aliases {
            if targets.is_empty() {
                out.push(Problem::error(
                    format!("aliases.{name}"),
                    "alias has no targets",
                ));
            }
        }
        if self.user(&self.postmaster).is_none()
            && !self.aliases.contains_key(&self.postmaster)
            && !self.postmaster.contains('@')
        {
            out.push(
                Problem::warning(
                    "postmaster",
                    format!("`{}` is not a user or alias", self.postmaster),
                )
                .hint("name a [[users]] entry; bounces and notices go there"),
            );
        }
        for (i, a) in self.accounts.iter().enumerate() {
            out.extend(a.validate(&format!("accounts[{i}]"), self));
        }
        out.extend(fetchmailrc::load::problems(self));
        if let Some(s) = &self.smarthost {
            out.extend(s.validate("smarthost"));
            if s.password.is_some()
                && let Err(e) = check_secret_file(&self.path)
            {
                out.push(Problem::error("smarthost.password", e));
            }
        }
        // The database holds password hashes, OAuth2 tokens and every message's headers.
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(&self.data_dir)
                && m.permissions().mode() & 0o007 != 0
            {
                out.push(
                    Problem::warning(
                        "data_dir",
                        format!(
                            "{} is readable by others (mode {:o})",
                            self.data_dir.display(),
                            m.permissions().mode() & 0o777
                        ),
                    )
                    .hint(format!(
                        "chmod -R o-rwx {} (zolder creates everything under it private)",
                        self.data_dir.display()
                    )),
                );
            }
        }
        out.extend(self.scan.validate("scan"));
        out.extend(self.queue.validate("queue"));
        out.extend(self.service_problems());
        out.extend(inbound::validate(self));
        if let (Some(_), None) | (None, Some(_)) = (&self.tls.cert, &self.tls.key) {
            out.push(Problem::error(
                "tls",
                "give both `cert` and `key`, or neither",
            ));
        }
        out
    }
}

impl Config {
    /// `user`, `allow_root`, and outgoing mail that can be accepted with nowhere to go.
    fn service_problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Some(u) = &self.user {
            match nix::unistd::User::from_name(u) {
                Ok(Some(pw)) if pw.uid.is_root() => out.push(
                    Problem::error("user", "names root; that is no privilege drop")
                        .hint("create one with `useradd --system zolder` and name it"),
                ),
                Ok(Some(_)) => {}
                _ => out.push(
                    Problem::error("user", format!("no such system user `{u}`")).hint(format!(
                        "useradd --system --home-dir {} --shell /usr/sbin/nologin {u}",
                        self.data_dir.display()
                    )),
                ),
            }
        }
        if self.smarthost.is_none() {
            let key = [
                ("listen.submission", &self.listen.submission),
                ("listen.smtp", &self.listen.smtp),
            ]
            .into_iter()
            .find(|(_, l)| !l.list().is_empty())
            .map(|(k, _)| k);
            if let Some(key) = key {
                out.push(
                    Problem::warning(
                        key,
                        "mail for remote addresses is accepted here, but there is no [smarthost]: \
                         it would wait in the queue (\"no smarthost configured\")",
                    )
                    .hint("add a [smarthost] table with your ISP's SMTP server"),
                );
            }
        }
        out
    }
}

/// User names become folder names: keep them boring.
pub fn valid_user_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && !n.starts_with('.')
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Resolves `p` against `base` unless absolute.
pub fn resolve_against(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    normalize(&joined)
}

/// Removes `.` and `..` components lexically (`/srv/zolder/examples/../data` →
/// `/srv/zolder/data`), so logs and errors show the path a person expects.
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Refuses a file holding secrets when group or others may read it (fetchmail does the
/// same), naming the file and the `chmod` that fixes it.
pub fn check_secret_file(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{}: holds a secret but is readable by group or others (mode {:o}); run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        ));
    }
    Ok(())
}

/// Reads a secret file (first line, trailing newline removed) after the permission check.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    check_secret_file(path)?;
    let s = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(s.lines().next().unwrap_or("").to_string())
}

/// Turns a figment error into one naming file, line and key, with a did-you-mean for
/// unknown keys.
fn figment_error(e: figment::Error, text: &str, path: &Path) -> ConfigError {
    let key = if e.path.is_empty() {
        None
    } else {
        Some(e.path.join("."))
    };
    let mut message = e.kind.to_string();
    let mut hint = None;
    let mut line = None;
    if let figment::error::Kind::UnknownField(field, expected) = &e.kind {
        message = format!("unknown key `{field}`");
        if let Some(best) = expected
            .iter()
            .map(|c| (strsim::jaro_winkler(field, c), *c))
            .filter(|(s, _)| *s > 0.7)
            .max_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal))
        {
            hint = Some(format!("did you mean `{}`?", best.1));
        } else if !expected.is_empty() {
            hint = Some(format!("known keys here: {}", expected.join(", ")));
        }
        line = find_key_line(text, field);
    } else if let Some(k) = e.path.last() {
        line = find_key_line(text, k);
    }
    if matches!(e.metadata.as_ref().map(|m| m.name.as_ref()), Some(n) if n.contains("environment"))
    {
        message = format!("{message} (from a ZOLDER_* environment variable)");
    }
    // TOML syntax errors carry their own line/column in the message.
    if line.is_none()
        && let Some(pos) = message.find("line ")
    {
        line = message[pos + 5..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok());
    }
    ConfigError {
        file: path.to_path_buf(),
        line,
        key,
        message,
        hint,
    }
}

/// The first line where `key` is assigned or opens a table.
pub fn find_key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            (t.starts_with(key) && t[key.len()..].trim_start().starts_with('='))
                || t.starts_with(&format!("[{key}]"))
                || t.starts_with(&format!("[[{key}]]"))
                || t.starts_with(&format!("\"{key}\""))
        })
        .map(|i| i + 1)
}

/// The line of a [`Problem`]'s key in the config text: `accounts[1].password_file` is
/// the `password_file =` line inside the second `[[accounts]]` table (the table's own
/// line when the key is not written there), `listen.imap` the `imap =` line under
/// `[listen]`, `user` the top-level `user =` line.
pub fn key_line(text: &str, key: &str) -> Option<usize> {
    let mut segs = key.split('.');
    let first = segs.next()?;
    let (name, index) = match first.split_once('[') {
        Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
        None => (first, None),
    };
    let lines: Vec<&str> = text.lines().collect();
    let header = |l: &str, h: &str| l.trim() == h || l.trim().starts_with(&format!("{h} "));
    let start = match index {
        Some(i) => lines
            .iter()
            .enumerate()
            .filter(|(_, l)| header(l, &format!("[[{name}]]")))
            .nth(i)
            .map(|(n, _)| n)?,
        None => match lines.iter().position(|l| header(l, &format!("[{name}]"))) {
            Some(n) => n,
            None => return find_key_line(text, name),
        },
    };
    let Some(sub) = segs.next() else {
        return Some(start + 1);
    };
    let sub = sub.split('[').next().unwrap_or(sub);
    for (n, l) in lines.iter().enumerate().skip(start + 1) {
        let t = l.trim_start();
        if t.starts_with('[') {
            break;
        }
        if t.starts_with(sub) && t[sub.len()..].trim_start().starts_with('=') {
            return Some(n + 1);
        }
    }
    Some(start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_points_at_its_own_key() {
        let text = "user = \"zolder\"\n[listen]\nimap = \"x\"\nsubmission = \"y\"\n\n[[accounts]]\nname = \"a\"\npassword_file = \"s/a\"\n\n[[accounts]]\nname = \"b\"\nhost = \"h\"\npassword_file = \"s/b\"\n";
        assert_eq!(key_line(text, "user"), Some(1));
        assert_eq!(key_line(text, "listen.submission"), Some(4));
        assert_eq!(key_line(text, "accounts[0].password_file"), Some(8));
        assert_eq!(key_line(text, "accounts[1].password_file"), Some(13));
        assert_eq!(key_line(text, "accounts[1].deliver_to"), Some(10));
        assert_eq!(key_line(text, "accounts[2].name"), None);
    }

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::from_str_at(s, Path::new("/tmp/z/zolder.toml"), false)
    }

    #[test]
    fn minimal_and_paths() {
        let c = parse("hostname = \"zolder.thuis\"\ndata_dir = \"data\"\n").unwrap();
        assert!(c.data_dir.ends_with("z/data"), "{:?}", c.data_dir);
        assert!(c.listen.imap.list().is_empty());
    }

    #[test]
    fn unknown_key_did_you_mean() {
        let e = parse("hostname = \"x\"\nlocal_domain = [\"a\"]\n").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("local_domain"), "{s}");
        assert!(s.contains("did you mean `local_domains`"), "{s}");
        assert_eq!(e.line, Some(2));
    }

    #[test]
    fn top_level_key_list_matches_the_struct() {
        let c = parse("hostname = \"x\"\n[smarthost]\nhost = \"h\"\n").unwrap();
        let v = serde_json::to_value(&c).unwrap();
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        let mut want: Vec<String> = TOP_LEVEL_KEYS.iter().map(|s| s.to_string()).collect();
        want.sort();
        // Optional keys that are None serialise as absent.
        for k in &keys {
            assert!(want.contains(k), "{k} missing from TOP_LEVEL_KEYS");
        }
        for k in [
            "hostname",
            "data_dir",
            "listen",
            "smarthost",
            "scan",
            "limits",
        ] {
            assert!(keys.contains(&k.to_string()));
        }
    }

    #[test]
    // figment's Jail API fixes the closure's error type; it is a test.
    #[allow(clippy::result_large_err)]
    fn unrelated_zolder_variables_are_not_config() {
        // figment's Jail restores the environment afterwards.
        figment::Jail::expect_with(|jail| {
            jail.set_env("ZOLDER_BIN", "/usr/bin/zolder");
            jail.set_env("ZOLDER_INTEROP", "1");
            jail.set_env("ZOLDER_SMARTHOST__HOST", "smtp.example.net");
            jail.set_env("ZOLDER_POSTMASTER", "anna");
            let c = Config::from_str_at(
                "hostname = \"x\"\n[smarthost]\nhost = \"h\"\n",
                Path::new("/tmp/z/zolder.toml"),
                true,
            )
            .map_err(|e| e.to_string())?;
            assert_eq!(c.smarthost.unwrap().host, "smtp.example.net");
            assert_eq!(c.postmaster, "anna");
            Ok(())
        });
    }

    #[test]
    fn listen_one_or_many() {
        let c = parse(
            "[listen]\nimap = \"127.0.0.1:1143\"\npop3 = [\"127.0.0.1:1110\", \"[::1]:1110\"]\n",
        )
        .unwrap();
        assert_eq!(c.listen.imap.list(), vec!["127.0.0.1:1143"]);
        assert_eq!(c.listen.pop3.list().len(), 2);
        assert!(c.validate().iter().all(|p| p.key != "listen.pop3"));
    }

    #[test]
    fn bad_listen_named() {
        let c = parse("[listen]\nimap = \"localhost\"\n").unwrap();
        assert!(c.validate().iter().any(|p| p.key == "listen.imap"));
    }
}
