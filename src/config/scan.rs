//! `[scan]`: virus, spam and banned-attachment checks in the delivery pipeline.

use serde::{Deserialize, Serialize};

use super::Problem;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanConfig {
    /// `"unix:/run/clamav/clamd.ctl"` or `"tcp:127.0.0.1:3310"`.
    #[serde(default)]
    pub clamd: Option<String>,
    /// `"127.0.0.1:783"`.
    #[serde(default)]
    pub spamd: Option<String>,
    /// `"http://127.0.0.1:11333"`.
    #[serde(default)]
    pub rspamd: Option<String>,
    #[serde(default)]
    pub bogofilter: bool,
    /// Amavis' default banned extensions and types.
    #[serde(default)]
    pub banned: bool,
    /// An external hook: argv, no shell.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub actions: ScanActions,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanActions {
    #[serde(default = "quarantine")]
    pub infected: String,
    #[serde(default = "quarantine")]
    pub banned: String,
    #[serde(default = "junk")]
    pub spam: String,
}

impl Default for ScanActions {
    fn default() -> Self {
        ScanActions {
            infected: quarantine(),
            banned: quarantine(),
            spam: junk(),
        }
    }
}

fn quarantine() -> String {
    "quarantine".into()
}
fn junk() -> String {
    "junk".into()
}

pub const ACTIONS: &[&str] = &["deliver", "junk", "quarantine", "reject", "discard"];

impl ScanConfig {
    pub fn validate(&self, key: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        for (k, v) in [
            ("infected", &self.actions.infected),
            ("banned", &self.actions.banned),
            ("spam", &self.actions.spam),
        ] {
            if !ACTIONS.contains(&v.as_str()) {
                out.push(
                    Problem::error(
                        format!("{key}.actions.{k}"),
                        format!("unknown action `{v}`"),
                    )
                    .hint(format!("one of {}", ACTIONS.join(", "))),
                );
            }
        }
        if let Some(c) = &self.clamd
            && !(c.starts_with("unix:") || c.starts_with("tcp:"))
        {
            out.push(
                Problem::error(format!("{key}.clamd"), format!("`{c}`"))
                    .hint("\"unix:/run/clamav/clamd.ctl\" or \"tcp:127.0.0.1:3310\""),
            );
        }
        if let Some(c) = &self.command
            && c.is_empty()
        {
            out.push(Problem::error(format!("{key}.command"), "empty command"));
        }
        out
    }
}
