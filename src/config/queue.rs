//! `[queue]` and `[submit]`: the outgoing queue's retry schedule and the LAN SMTP
//! server's policy. Defaults are Postfix's (postconf(5)): backoff 300 s–4000 s, give up
//! after 5 days, no delay warnings.

use serde::{Deserialize, Deserializer, Serialize};

use super::Problem;

/// `[queue]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Shortest wait between attempts (Postfix `minimal_backoff_time`).
    #[serde(default = "d_min_backoff", deserialize_with = "seconds")]
    pub min_backoff: u64,
    /// Longest wait between attempts (Postfix `maximal_backoff_time`).
    #[serde(default = "d_max_backoff", deserialize_with = "seconds")]
    pub max_backoff: u64,
    /// Give up (and bounce) after this long in the queue (Postfix `maximal_queue_lifetime`).
    #[serde(default = "d_lifetime", deserialize_with = "seconds")]
    pub lifetime: u64,
    /// Same for bounces themselves (Postfix `bounce_queue_lifetime`).
    #[serde(default = "d_lifetime", deserialize_with = "seconds")]
    pub bounce_lifetime: u64,
    /// Send the sender a "still trying" notice after this long; 0 = never
    /// (Postfix `delay_warning_time`).
    #[serde(default, deserialize_with = "seconds")]
    pub delay_warning: u64,
    /// Return only the headers in a bounce when the message is larger
    /// (Postfix `bounce_size_limit`).
    #[serde(default = "d_bounce_size")]
    pub bounce_size_limit: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            min_backoff: d_min_backoff(),
            max_backoff: d_max_backoff(),
            lifetime: d_lifetime(),
            bounce_lifetime: d_lifetime(),
            delay_warning: 0,
            bounce_size_limit: d_bounce_size(),
        }
    }
}

impl QueueConfig {
    pub fn validate(&self, key: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.min_backoff == 0 || self.min_backoff > self.max_backoff {
            out.push(
                Problem::error(
                    format!("{key}.min_backoff"),
                    "must be > 0 and ≤ max_backoff",
                )
                .hint("Postfix's defaults are 300s and 4000s"),
            );
        }
        out
    }
}

/// `[submit]`: the LAN SMTP server (`[listen] submission` and `smtp`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitConfig {
    /// Recipients per message (Postfix `smtpd_recipient_limit` is 1000).
    #[serde(default = "d_max_rcpt")]
    pub max_recipients: usize,
    /// Authenticated users may only use their own addresses as envelope sender
    /// (Postfix `reject_sender_login_mismatch`).
    #[serde(default = "d_true")]
    pub sender_login_match: bool,
    /// Seconds of client silence before the session is closed.
    #[serde(default = "d_idle", deserialize_with = "seconds")]
    pub idle_timeout: u64,
    /// Reject `RCPT TO` for a local name nobody answers to (550 5.1.1) rather than
    /// accepting and bouncing later.
    #[serde(default = "d_true")]
    pub reject_unknown_local: bool,
}

impl Default for SubmitConfig {
    fn default() -> Self {
        SubmitConfig {
            max_recipients: d_max_rcpt(),
            sender_login_match: true,
            idle_timeout: d_idle(),
            reject_unknown_local: true,
        }
    }
}

fn d_min_backoff() -> u64 {
    300
}
fn d_max_backoff() -> u64 {
    4000
}
fn d_lifetime() -> u64 {
    5 * 86400
}
fn d_bounce_size() -> usize {
    50_000
}
fn d_max_rcpt() -> usize {
    1000
}
fn d_true() -> bool {
    true
}
fn d_idle() -> u64 {
    300
}

/// Parses `300`, `"300s"`, `"5m"`, `"4h"`, `"5d"`, `"1w"` into seconds.
pub fn parse_seconds(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => return None,
    };
    n.checked_mul(mult)
}

pub(crate) fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum V {
        N(u64),
        S(String),
    }
    match V::deserialize(d)? {
        V::N(n) => Ok(n),
        V::S(s) => parse_seconds(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{s}` is not a duration (write e.g. 300, \"300s\", \"4h\", \"5d\")"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_seconds("300"), Some(300));
        assert_eq!(parse_seconds("4h"), Some(14400));
        assert_eq!(parse_seconds("5d"), Some(432000));
        assert_eq!(parse_seconds("5x"), None);
    }
}
