//! NOTIFY (RFC 5465): after `NOTIFY SET`, the session tells the client about
//! changes while it waits for the next command, not only when one completes:
//! the selected mailbox's EXISTS/EXPUNGE/FETCH (SELECTED; SELECTED-DELAYED holds
//! expunges until a command), `* STATUS` for other watched mailboxes (INBOXES,
//! PERSONAL, SUBSCRIBED, SUBTREE, MAILBOXES) on MessageNew/MessageExpunge/
//! FlagChange, and `* LIST` on MailboxName and SubscriptionChange. `NOTIFY NONE`
//! stops it.
//!
//! How: the session's read loop also waits on the user's change signal (the one
//! IDLE uses); on a change it compares a snapshot of the watched mailboxes' STATUS
//! and of the mailbox list with the store's, and writes what differs.
//!
//! # Format
//! `NOTIFY SET STATUS (SELECTED (MessageNew (UID FLAGS) MessageExpunge))
//! (PERSONAL (MessageNew MessageExpunge MailboxName))` → `* STATUS "Lists" (MESSAGES 3
//! UIDNEXT 4 UIDVALIDITY 1 UNSEEN 1)` ... `OK NOTIFY completed`.

use std::collections::BTreeMap;

use crate::imapd::backend::{Backend, ChangeSignal, MailboxInfo, StatusData, StoreResult};
use crate::imapd::proto::{FetchAttr, NotifyEvent, NotifyFilter, NotifySpec, SeqSet, response};
use crate::imapd::session::{Fatal, Reply, Session, State};

/// What a session with NOTIFY active keeps between changes.
pub(crate) struct NotifyState {
    spec: NotifySpec,
    /// In a mutex only so the session stays `Sync`; reached by `get_mut`, never
    /// locked.
    signal: Option<std::sync::Mutex<Box<dyn ChangeSignal>>>,
    /// Last STATUS sent or seen, per watched mailbox with message events.
    status: BTreeMap<String, StatusData>,
    /// Every mailbox and whether it is subscribed.
    names: BTreeMap<String, bool>,
}

/// The events of the first non-selected filter `m` matches.
fn events_for<'a>(spec: &'a NotifySpec, m: &MailboxInfo) -> Option<&'a [NotifyEvent]> {
    let under = |n: &String| m.name == *n || m.name.starts_with(&format!("{n}."));
    spec.groups
        .iter()
        .find(|g| match &g.filter {
            NotifyFilter::Selected | NotifyFilter::SelectedDelayed => false,
            NotifyFilter::Inboxes => m.name == "INBOX",
            NotifyFilter::Personal => true,
            NotifyFilter::Subscribed => m.subscribed,
            NotifyFilter::Subtree(ns) => ns.iter().any(under),
            NotifyFilter::Mailboxes(ns) => ns.contains(&m.name),
        })
        .map(|g| g.events.as_slice())
}

fn has(events: &[NotifyEvent], f: fn(&NotifyEvent) -> bool) -> bool {
    events.iter().any(f)
}

fn wants_messages(e: &[NotifyEvent]) -> bool {
    has(e, |e| matches!(e, NotifyEvent::MessageNew(_)))
}

/// (mailbox list with subscription, STATUS of the mailboxes watched for messages).
type Snapshot = (BTreeMap<String, bool>, BTreeMap<String, StatusData>);

fn snapshot(b: &dyn Backend, user: &str, spec: &NotifySpec) -> StoreResult<Snapshot> {
    let mut names = BTreeMap::new();
    let mut status = BTreeMap::new();
    for m in b.list(user)? {
        names.insert(m.name.clone(), m.subscribed);
        if events_for(spec, &m).is_some_and(wants_messages)
            && let Ok(st) = b.status(user, &m.name)
        {
            status.insert(m.name.clone(), st);
        }
    }
    Ok((names, status))
}

impl Session {
    pub(crate) async fn op_notify(&mut self, spec: Option<NotifySpec>) -> Reply {
        let Some(spec) = spec else {
            self.notify = None;
            return Reply::ok("NOTIFY completed");
        };
        if spec
            .groups
            .iter()
            .any(|g| has(&g.events, |e| matches!(e, NotifyEvent::Unsupported(_))))
        {
            return Reply::no("Unsupported event").code(
                "BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)",
            );
        }
        let user = self.user();
        let spec2 = spec.clone();
        let r = self
            .blocking(move |b| {
                Ok((
                    b.watch(&user).ok().map(std::sync::Mutex::new),
                    snapshot(b, &user, &spec2)?,
                ))
            })
            .await;
        let (signal, (names, status)) = match r {
            Ok(x) => x,
            Err(e) => return self.store_no(e),
        };
        let selected = self.view().map(|v| v.name.clone());
        if spec.status {
            for (name, st) in &status {
                if Some(name) != selected.as_ref() {
                    self.write_status(name, st);
                }
            }
        }
        self.notify = Some(Box::new(NotifyState {
            spec,
            signal,
            status,
            names,
        }));
        Reply::ok("NOTIFY completed")
    }

    fn write_status(&mut self, name: &str, st: &StatusData) {
        let mut out = b"* STATUS ".to_vec();
        response::mailbox_as(&mut out, name, self.utf8);
        out.extend_from_slice(
            format!(
                " (MESSAGES {} UIDNEXT {} UIDVALIDITY {} UNSEEN {}",
                st.messages, st.state.uidnext, st.state.uidvalidity, st.unseen
            )
            .as_bytes(),
        );
        if self.condstore {
            out.extend_from_slice(format!(" HIGHESTMODSEQ {}", st.state.highestmodseq).as_bytes());
        }
        out.extend_from_slice(b")\r\n");
        self.out.extend_from_slice(&out);
    }

    fn write_list(&mut self, attrs: &str, name: &str) {
        let mut out = format!("* LIST ({attrs}) \".\" ").into_bytes();
        response::mailbox_as(&mut out, name, self.utf8);
        out.extend_from_slice(b"\r\n");
        self.out.extend_from_slice(&out);
    }

    /// Waits for client bytes or, with NOTIFY active, a change to report.
    pub(crate) async fn read_or_notify(&mut self) -> Result<(), Fatal> {
        let Some(mut n) = self.notify.take() else {
            return self.read_more().await;
        };
        let woke = tokio::select! {
            r = self.read_more() => r.map(|_| false),
            _ = async {
                match n.signal.as_mut() {
                    Some(s) => s.get_mut().unwrap_or_else(|p| p.into_inner()).changed().await,
                    None => tokio::time::sleep(std::time::Duration::from_secs(2)).await,
                }
            } => Ok(true),
        };
        // NOTIFY NONE cannot have run meanwhile: no command was dispatched.
        self.notify = Some(n);
        if woke? {
            self.notify_changes().await;
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes what changed since the last snapshot.
    async fn notify_changes(&mut self) {
        let Some(n) = self.notify.as_ref() else {
            return;
        };
        let spec = n.spec.clone();

        // 1. The selected mailbox: the usual untagged updates, now.
        let sel = spec.groups.iter().find(|g| {
            matches!(
                g.filter,
                NotifyFilter::Selected | NotifyFilter::SelectedDelayed
            )
        });
        if let (Some(g), true) = (sel, matches!(self.state, State::Selected(_)))
            && !g.events.is_empty()
        {
            let delayed = g.filter == NotifyFilter::SelectedDelayed;
            let before = self.view().map_or(0, |v| v.max_uid());
            self.sync(!delayed).await;
            let attrs: Vec<FetchAttr> = g
                .events
                .iter()
                .find_map(|e| match e {
                    NotifyEvent::MessageNew(a) if !a.is_empty() => Some(a.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            let after = self.view().map_or(0, |v| v.max_uid());
            if !attrs.is_empty()
                && after > before
                && let Some(set) = SeqSet::parse(&format!("{}:{after}", before + 1))
                && let Err(e) = self.op_fetch(true, set, attrs, None, false).await
            {
                tracing::debug!(error = %e, "NOTIFY fetch of new messages failed");
            }
        }

        // 2. The other mailboxes: STATUS and LIST for what differs.
        let user = self.user();
        let spec2 = spec.clone();
        let r = self
            .blocking(move |b| Ok((snapshot(b, &user, &spec2)?, b.list(&user)?)))
            .await;
        let ((names, status), infos) = match r {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "NOTIFY snapshot failed");
                return;
            }
        };
        let Some(old) = self.notify.as_mut() else {
            return;
        };
        let old_names = std::mem::replace(&mut old.names, names.clone());
        let old_status = std::mem::replace(&mut old.status, status.clone());
        let selected = self.view().map(|v| v.name.clone());
        for m in &infos {
            let Some(ev) = events_for(&spec, m) else {
                continue;
            };
            let name = &m.name;
            if has(ev, |e| matches!(e, NotifyEvent::MailboxName)) && !old_names.contains_key(name) {
                self.write_list("", name);
            }
            if has(ev, |e| matches!(e, NotifyEvent::SubscriptionChange))
                && old_names.get(name).is_some_and(|&s| s != m.subscribed)
            {
                self.write_list(if m.subscribed { "\\Subscribed" } else { "" }, name);
            }
            if Some(name) == selected.as_ref() {
                continue;
            }
            if let (Some(a), Some(b)) = (old_status.get(name), status.get(name)) {
                let counts = a.messages != b.messages || a.state.uidnext != b.state.uidnext;
                let flags = a.unseen != b.unseen || a.state.highestmodseq != b.state.highestmodseq;
                let flag_events = has(ev, |e| matches!(e, NotifyEvent::FlagChange));
                if counts || (flags && flag_events) {
                    self.write_status(name, b);
                }
            }
        }
        // Gone mailboxes (deleted, or the old name of a rename).
        for (name, &subscribed) in &old_names {
            if names.contains_key(name) {
                continue;
            }
            let info = MailboxInfo {
                name: name.clone(),
                special_use: None,
                subscribed,
                exists: false,
            };
            if events_for(&spec, &info)
                .is_some_and(|ev| has(ev, |e| matches!(e, NotifyEvent::MailboxName)))
            {
                self.write_list("\\NonExistent", name);
            }
        }
    }
}
