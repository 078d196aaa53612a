//! `[smarthost]`: the ISP's SMTP server that outgoing mail is relayed through.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::account::{OAuth2Config, TlsMode};
use super::{Problem, resolve_against};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmarthostConfig {
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default = "default_tls")]
    pub tls: TlsMode,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub oauth2: Option<OAuth2Config>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_fingerprint: Option<String>,
    /// Cron expression (with seconds), or `"manual"`: wait for `zolder flush`.
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// Sender masquerading when mail leaves: local address → address the ISP knows.
    #[serde(default)]
    pub masquerade: std::collections::BTreeMap<String, String>,
    /// Seconds to wait for each reply from the smarthost (Postfix's smtp_*_timeout
    /// are 300 s); a silent server defers the run instead of hanging it.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
}

fn default_timeout() -> u64 {
    300
}

fn default_tls() -> TlsMode {
    TlsMode::Starttls
}
fn default_schedule() -> String {
    "0 */15 * * * *".into()
}

impl SmarthostConfig {
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            TlsMode::Implicit => 465,
            TlsMode::Starttls => 587,
            TlsMode::None => 25,
        })
    }

    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = &self.password_file {
            self.password_file = Some(resolve_against(base, p));
        }
        if let Some(p) = &self.ca_file {
            self.ca_file = Some(resolve_against(base, p));
        }
    }

    pub fn validate(&self, key: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.host.trim().is_empty() {
            out.push(Problem::error(format!("{key}.host"), "no host"));
        }
        if self.schedule != "manual"
            && let Err(e) = self.schedule.parse::<cron::Schedule>()
        {
            out.push(
                Problem::error(
                    format!("{key}.schedule"),
                    format!("`{}`: {e}", self.schedule),
                )
                .hint("a cron expression with seconds, or \"manual\""),
            );
        }
        if let Some(p) = &self.password_file
            && let Err(e) = super::check_secret_file(p)
        {
            out.push(Problem::error(format!("{key}.password_file"), e));
        }
        out
    }
}
