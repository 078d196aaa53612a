//! `[web]` and `[managesieve]`: the webmail's sessions and pages, and the ManageSieve
//! server's quotas. The listeners themselves are `[listen] web`, `webs` and
//! `managesieve`; who may open `/admin` is the top-level `admins` list.

use serde::{Deserialize, Serialize};

use super::queue::seconds;

/// `[web]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// A session unused for this long is gone (seconds, or "30m", "8h", "7d").
    #[serde(default = "d_idle", deserialize_with = "seconds")]
    pub session_idle: u64,
    /// Messages per folder page.
    #[serde(default = "d_page")]
    pub page_size: usize,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            session_idle: d_idle(),
            page_size: d_page(),
        }
    }
}

fn d_idle() -> u64 {
    8 * 3600
}
fn d_page() -> usize {
    50
}

/// `[managesieve]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManageSieveConfig {
    /// Largest script accepted (bytes).
    #[serde(default = "d_script_size")]
    pub max_script_size: u64,
    /// Scripts a user may keep.
    #[serde(default = "d_scripts")]
    pub max_scripts: usize,
}

impl Default for ManageSieveConfig {
    fn default() -> Self {
        ManageSieveConfig {
            max_script_size: d_script_size(),
            max_scripts: d_scripts(),
        }
    }
}

fn d_script_size() -> u64 {
    64 * 1024
}
fn d_scripts() -> usize {
    20
}
