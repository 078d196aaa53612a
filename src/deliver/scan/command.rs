//! The external command hook (after maddy's `check.command`): a program run without a
//! shell, the message on its stdin, its exit code mapped to an action and each stdout
//! line of the form `Name: value` added as a header.
//!
//! Placeholders in the argv: `{sender}` (envelope sender, empty for `<>`), `{rcpts}`
//! (expands to one argument per recipient; inside a longer argument, a comma-joined
//! list), `{source}` (fetch, submit, local, queue, import). Default exit codes: 0
//! deliver, 1 reject, 2 quarantine; others are temporary failures. `scan.command_exit`
//! overrides or adds codes (`{ "3" = "junk" }`, or `"tempfail"`).
//!
//! # Security
//! The argv is the admin's; only placeholders carry message data (envelope addresses),
//! each as one argument, never through a shell. Stdout is capped at 64 KiB and at 32
//! header lines, each checked to be a well-formed single header line.

use std::collections::BTreeMap;
use std::process::Stdio;

use tokio::process::Command;

use super::{Action, Check, Checked, Verdict, one_line, valid_header_name};
use crate::config::scan::ScanConfig;
use crate::message::Envelope;

const MAX_STDOUT: u64 = 64 * 1024;
const MAX_HEADERS: usize = 32;

/// What an exit code means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitMeaning {
    Act(Action),
    TempFail,
}

#[derive(Debug, Clone)]
pub struct CommandHook {
    argv: Vec<String>,
    codes: BTreeMap<i32, ExitMeaning>,
}

impl CommandHook {
    pub fn from_config(argv: &[String], sc: &ScanConfig) -> Result<CommandHook, String> {
        if argv.is_empty() {
            return Err("empty command".into());
        }
        let mut codes = BTreeMap::from([
            (0, ExitMeaning::Act(Action::Deliver)),
            (1, ExitMeaning::Act(Action::Reject)),
            (2, ExitMeaning::Act(Action::Quarantine)),
        ]);
        for (k, v) in &sc.command_exit {
            let code: i32 = k
                .parse()
                .map_err(|_| format!("command_exit: `{k}` is not an exit code"))?;
            let m = if v == "tempfail" {
                ExitMeaning::TempFail
            } else {
                ExitMeaning::Act(
                    Action::parse(v).ok_or(format!("command_exit.{k}: unknown action `{v}`"))?,
                )
            };
            codes.insert(code, m);
        }
        Ok(CommandHook {
            argv: argv.to_vec(),
            codes,
        })
    }

    /// The argv with placeholders filled in.
    pub fn expand(&self, env: &Envelope) -> Vec<String> {
        let sender = env.sender.clone().unwrap_or_default();
        let source = env.source.kind();
        let mut out = Vec::new();
        for a in &self.argv {
            if a == "{rcpts}" {
                out.extend(env.recipients.iter().cloned());
                continue;
            }
            out.push(
                a.replace("{sender}", &sender)
                    .replace("{source}", source)
                    .replace("{rcpts}", &env.recipients.join(",")),
            );
        }
        out
    }

    pub fn meaning(&self, code: Option<i32>) -> ExitMeaning {
        code.and_then(|c| self.codes.get(&c).copied())
            .unwrap_or(ExitMeaning::TempFail)
    }
}

/// `Name: value` lines from the hook's stdout, well-formed ones only.
pub fn header_lines(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            let n = n.trim_end();
            valid_header_name(n).then(|| (n.to_string(), one_line(v.trim())))
        })
        .take(MAX_HEADERS)
        .collect()
}

#[async_trait::async_trait]
impl Check for CommandHook {
    fn name(&self) -> &'static str {
        "command"
    }
    async fn check(&self, message: &[u8], envelope: &Envelope) -> Checked {
        let argv = self.expand(envelope);
        let spawned = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => return Checked::new(Verdict::temporary_error(format!("{}: {e}", argv[0]))),
        };
        let (r1, r2, status) = super::feed_and_collect(&mut child, message, MAX_STDOUT).await;
        let (out, status) = match (r1, status) {
            (Ok(o), Ok(s)) => (o, s),
            (Err(e), _) | (_, Err(e)) => {
                return Checked::new(Verdict::temporary_error(format!("{}: {e}", argv[0])));
            }
        };
        let headers = header_lines(&String::from_utf8_lossy(&out));
        let stderr = one_line(&String::from_utf8_lossy(&r2.unwrap_or_default()));
        let verdict = match self.meaning(status.code()) {
            ExitMeaning::Act(Action::Deliver) => Verdict::Clean,
            ExitMeaning::Act(action) => Verdict::Action {
                action,
                reason: if stderr.is_empty() {
                    format!("{} exited {:?}", argv[0], status.code())
                } else {
                    stderr
                },
            },
            ExitMeaning::TempFail => Verdict::temporary_error(format!(
                "{} exited {:?}: {stderr}",
                argv[0],
                status.code()
            )),
        };
        Checked { verdict, headers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Source;

    fn env() -> Envelope {
        Envelope::new(
            Some("a@example.org".into()),
            vec!["b@zolder.thuis".into(), "c@zolder.thuis".into()],
            Source::Import,
        )
    }

    fn hook(argv: &[&str], exit: &[(&str, &str)]) -> CommandHook {
        let mut sc = ScanConfig::default();
        for (k, v) in exit {
            sc.command_exit.insert(k.to_string(), v.to_string());
        }
        CommandHook::from_config(&argv.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &sc)
            .unwrap()
    }

    #[test]
    fn placeholders_and_codes() {
        let h = hook(
            &["/bin/x", "--from={sender}", "{rcpts}", "{source}"],
            &[("3", "junk")],
        );
        assert_eq!(
            h.expand(&env()),
            [
                "/bin/x",
                "--from=a@example.org",
                "b@zolder.thuis",
                "c@zolder.thuis",
                "import"
            ]
        );
        assert_eq!(h.meaning(Some(0)), ExitMeaning::Act(Action::Deliver));
        assert_eq!(h.meaning(Some(2)), ExitMeaning::Act(Action::Quarantine));
        assert_eq!(h.meaning(Some(3)), ExitMeaning::Act(Action::Junk));
        assert_eq!(h.meaning(Some(9)), ExitMeaning::TempFail);
        assert_eq!(h.meaning(None), ExitMeaning::TempFail);
        assert_eq!(
            header_lines("X-Hook: ok\nnot a header\nBad Name: x\nX-Two:  2 \n"),
            [
                ("X-Hook".to_string(), "ok".to_string()),
                ("X-Two".to_string(), "2".to_string())
            ]
        );
    }

    /// Runs /bin/sh as the *hook program* (the hook itself uses no shell) to act like
    /// a small filter script: reads stdin, prints a header, exits 2.
    #[tokio::test]
    async fn runs_program() {
        if !std::path::Path::new("/bin/sh").exists() {
            return;
        }
        let h = hook(
            &[
                "/bin/sh",
                "-c",
                "n=$(wc -c); echo \"X-Size: $n\"; echo \"for $1\" >&2; exit 2",
                "hook",
                "{rcpts}",
            ],
            &[],
        );
        let c = h.check(b"12345", &env()).await;
        assert_eq!(c.headers, [("X-Size".to_string(), "5".to_string())]);
        match c.verdict {
            Verdict::Action { action, reason } => {
                assert_eq!(action, Action::Quarantine);
                assert_eq!(reason, "for b@zolder.thuis");
            }
            v => panic!("{v:?}"),
        }
        let missing = hook(&["/nonexistent/hook"], &[]);
        assert!(matches!(
            missing.check(b"x", &env()).await.verdict,
            Verdict::Error {
                temporary: true,
                ..
            }
        ));
    }
}
