//! The local delivery pipeline: parse → scan → route → trace headers → filter → store,
//! with a per-recipient outcome. [`LocalDelivery`] implements [`Deliver`], so fetch,
//! the queue and `zolder deliver` all hand it messages the same way.
//!
//! It uses `spool` (storage), `config` (users, aliases, domains, limits) and `message`;
//! it never calls fetch, queue, relay or imapd. Mail that a delivery generates (alias
//! forwards to remote addresses, vacation replies, notices) is returned in
//! [`DeliveryReport::generated`]; the caller queues it.
//!
//! # Stages
//! 1. **Parse** the header with mail-parser, for decisions only (Message-ID,
//!    `Delivered-To:` loop check, hop count). The stored message is the received bytes
//!    with our trace headers in front — never re-serialised, so broken MIME, 8-bit
//!    text, NUL bytes and bare LFs arrive exactly as sent.
//! 2. **Scan** ([`hooks::ScanStage`], once per message): may reject, hold, or send to
//!    Junk, and may add header lines.
//! 3. **Route** ([`route`]): envelope recipients → local users and remote forwards.
//! 4. **Trace**: `Return-Path:`, `Delivered-To:`, `Received:` per user.
//! 5. **Filter** ([`hooks::FilterStage`], once per user): keep / fileinto / discard /
//!    reject.
//! 6. **Store**: the whole batch through [`Spool::store_batch`] — one fsync per file,
//!    one per directory, one transaction that also records the idempotency keys —
//!    and only then an outcome per recipient.
//!
//! # Security
//! Messages come from the ISP, the LAN and local users: all untrusted. The parser
//! reads only the header, the size is bounded by `limits.message_size` before any
//! work, and nothing from the message ever picks a file path (folders from filters
//! are checked by `spool::normalize_name`).

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;
use tracing::{info, info_span, warn};

use crate::config::Config;
use crate::message::{Deliver, DeliveryReport, Generated, Incoming, RcptOutcome};
use crate::spool::{self, Flags, Spool, StoreOutcome, StoreRequest};

pub mod hooks;
pub mod quarantine;
pub mod route;
pub mod scan;
pub mod sieve;
pub mod trace;

pub use hooks::{
    FilterAction, FilterOutcome, FilterRequest, FilterStage, PassThrough, ScanDisposition,
    ScanOutcome, ScanStage,
};

/// More `Received:` headers than this is a loop (RFC 5321 6.3 suggests 100; Postfix
/// uses 50).
pub const MAX_HOPS: usize = 50;

/// The local delivery pipeline. Cheap to clone.
#[derive(Clone)]
pub struct LocalDelivery {
    config: Arc<Config>,
    spool: Spool,
    scan: Arc<dyn ScanStage>,
    filter: Arc<dyn FilterStage>,
}

/// What the header parse tells the pipeline.
#[derive(Debug, Clone, Default)]
struct HeaderFacts {
    message_id: Option<String>,
    delivered_to: Vec<String>,
    hops: usize,
}

fn header_facts(bytes: &[u8]) -> HeaderFacts {
    let Some(msg) = mail_parser::MessageParser::new().parse_headers(bytes) else {
        return HeaderFacts::default();
    };
    HeaderFacts {
        message_id: msg.message_id().map(|s| s.chars().take(998).collect()),
        delivered_to: msg
            .header_values("Delivered-To")
            .filter_map(|v| v.as_text())
            .map(|s| s.trim().to_ascii_lowercase())
            .collect(),
        hops: msg.header_values("Received").count(),
    }
}

/// A message after parse and scan, before routing.
struct Prepared {
    msg: Incoming,
    id: String,
    facts: HeaderFacts,
    /// An outcome for every recipient, decided before routing.
    all: Option<RcptOutcome>,
    scan: ScanOutcome,
}

/// Per message: its slots, and per recipient the slots it maps to or its outcome.
type Plan = (Vec<Slot>, Vec<Result<Vec<usize>, RcptOutcome>>);

/// One user's copy of one message.
struct Slot {
    user: String,
    reqs: Vec<usize>,
    outcome: Option<RcptOutcome>,
    filter: FilterOutcome,
}

impl LocalDelivery {
    /// A pipeline with no scanning and no filters (see [`with_scan`](Self::with_scan),
    /// [`with_filter`](Self::with_filter)).
    pub fn new(config: Arc<Config>, spool: Spool) -> LocalDelivery {
        LocalDelivery {
            config,
            spool,
            scan: Arc::new(PassThrough),
            filter: Arc::new(PassThrough),
        }
    }

    /// Plugs in the scan stage.
    pub fn with_scan(mut self, scan: Arc<dyn ScanStage>) -> LocalDelivery {
        self.scan = scan;
        self
    }

    /// Plugs in the per-user filter stage.
    pub fn with_filter(mut self, filter: Arc<dyn FilterStage>) -> LocalDelivery {
        self.filter = filter;
        self
    }

    pub fn spool(&self) -> &Spool {
        &self.spool
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    async fn prepare(&self, msg: Incoming) -> Prepared {
        let id = format!("{:016X}", rand::random::<u64>());
        let bytes = &msg.message.bytes;
        let facts = header_facts(bytes);
        let limit = self.config.limits.message_size;
        let all = if bytes.is_empty() {
            Some(RcptOutcome::PermFail(554, "5.6.0 empty message".into()))
        } else if bytes.len() as u64 > limit {
            Some(RcptOutcome::PermFail(
                552,
                format!(
                    "5.3.4 message of {} bytes exceeds the limit of {limit}",
                    bytes.len()
                ),
            ))
        } else if facts.hops > MAX_HOPS {
            Some(RcptOutcome::PermFail(
                554,
                format!("5.4.6 too many hops ({} Received: headers)", facts.hops),
            ))
        } else {
            None
        };
        let scan = if all.is_none() {
            self.scan.scan(&msg.envelope, bytes).await
        } else {
            ScanOutcome::deliver()
        };
        Prepared {
            msg,
            id,
            facts,
            all,
            scan,
        }
    }

    /// Routing, filtering and storing for a batch of prepared messages (blocking).
    /// A temporary failure when a local target of one recipient has a quota
    /// (`[[users]] quota_storage` / `quota_messages`) this message would exceed. The
    /// whole recipient waits (an alias is all or nothing, so a retry never duplicates
    /// the copies of the members with room): the ISP keeps the message, the queue
    /// retries it, a LAN client gets 452 — mail is never dropped for a full mailbox.
    /// `usage` carries each user's total across the batch; users already given a copy
    /// of this message (`taken`) are not counted twice.
    fn over_quota(
        &self,
        targets: &[route::Target],
        taken: &HashMap<String, usize>,
        size: u64,
        usage: &mut HashMap<String, crate::db::quota::Usage>,
    ) -> Option<RcptOutcome> {
        let mut adds = Vec::new();
        for t in targets {
            let route::Target::Local { user, .. } = t else {
                continue;
            };
            let key = user.to_ascii_lowercase();
            if taken.contains_key(&key) || adds.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let Some(u) = self.config.user(user) else {
                continue;
            };
            if u.quota_storage.is_none() && u.quota_messages.is_none() {
                continue;
            }
            let now = match usage.get(&key) {
                Some(n) => *n,
                None => match self.spool.usage(user) {
                    Ok(n) => n,
                    Err(e) => {
                        warn!(%user, error = %e, "quota: usage unknown; delivering");
                        continue;
                    }
                },
            };
            let full = u.quota_storage.is_some_and(|q| now.bytes + size > q)
                || u.quota_messages.is_some_and(|q| now.messages + 1 > q);
            if full {
                warn!(%user, bytes = now.bytes, messages = now.messages, size, "quota: mailbox full, delivery deferred");
                return Some(RcptOutcome::TempFail(format!(
                    "4.2.2 mailbox of {user} is full (quota)"
                )));
            }
            adds.push((key, now));
        }
        for (key, mut n) in adds {
            n.bytes += size;
            n.messages += 1;
            usage.insert(key, n);
        }
        None
    }

    fn route_and_store(&self, batch: Vec<Prepared>) -> Vec<DeliveryReport> {
        let now = crate::db::now();
        let mut reports: Vec<DeliveryReport> = Vec::with_capacity(batch.len());
        let mut reqs: Vec<StoreRequest> = Vec::new();
        // Per message: its slots, and for each recipient the slots it maps to (or an
        // outcome decided already).
        let mut plans: Vec<Plan> = Vec::new();
        // Per user with a quota: what the mailboxes hold, plus what this batch adds.
        let mut usage: HashMap<String, crate::db::quota::Usage> = HashMap::new();

        for p in &batch {
            let span = info_span!("deliver", id = %p.id, message_id = p.facts.message_id.as_deref().unwrap_or(""));
            let _g = span.enter();
            let env = &p.msg.envelope;
            let raw = &p.msg.message.bytes;
            let mut report = DeliveryReport {
                generated: p.scan.generated.clone(),
                ..Default::default()
            };
            let early = p.all.clone().or_else(|| match &p.scan.disposition {
                ScanDisposition::Held { reason } => {
                    info!("held by the scan stage: {reason}");
                    Some(RcptOutcome::Delivered)
                }
                ScanDisposition::Reject(code, text) => {
                    Some(RcptOutcome::PermFail(*code, text.clone()))
                }
                ScanDisposition::TempFail(r) => Some(RcptOutcome::TempFail(r.clone())),
                ScanDisposition::Deliver | ScanDisposition::Junk => None,
            });
            let mut slots: Vec<Slot> = Vec::new();
            let mut rcpts: Vec<Result<Vec<usize>, RcptOutcome>> = Vec::new();
            if let Some(o) = early {
                rcpts = env.recipients.iter().map(|_| Err(o.clone())).collect();
                reports.push(report);
                plans.push((slots, rcpts));
                continue;
            }
            let nl = trace::line_ending(raw);
            let mut by_user: HashMap<String, usize> = HashMap::new();
            let mut forwarded = std::collections::HashSet::new();
            for rcpt in &env.recipients {
                let targets = match route::resolve(&self.config, rcpt) {
                    Ok(t) => t,
                    Err(o) => {
                        rcpts.push(Err(o));
                        continue;
                    }
                };
                if let Some(o) = self.over_quota(&targets, &by_user, raw.len() as u64, &mut usage) {
                    rcpts.push(Err(o));
                    continue;
                }
                let mut mine = Vec::new();
                for t in targets {
                    match t {
                        route::Target::Remote { address, alias } => {
                            if forwarded.insert(address.to_ascii_lowercase()) {
                                report
                                    .generated
                                    .push(self.forward(p, &alias, &address, now, nl));
                            }
                        }
                        route::Target::Local { user, delivered_to } => {
                            let key = user.to_ascii_lowercase();
                            if let Some(&si) = by_user.get(&key) {
                                mine.push(si);
                                continue;
                            }
                            let si = slots.len();
                            by_user.insert(key, si);
                            mine.push(si);
                            let slot =
                                self.plan_user(p, &user, &delivered_to, rcpt, now, nl, &mut reqs);
                            report
                                .generated
                                .extend(slot.filter.generated.iter().cloned());
                            slots.push(slot);
                        }
                    }
                }
                rcpts.push(Ok(mine));
            }
            reports.push(report);
            plans.push((slots, rcpts));
        }

        // One group commit for everything.
        let results = if reqs.is_empty() {
            vec![]
        } else {
            self.spool.store_batch(reqs)
        };

        for ((p, report), (mut slots, rcpts)) in batch.iter().zip(reports.iter_mut()).zip(plans) {
            let span = info_span!("deliver", id = %p.id);
            let _g = span.enter();
            for slot in slots.iter_mut() {
                if slot.outcome.is_some() {
                    continue;
                }
                let mut o = RcptOutcome::Delivered;
                for &ri in &slot.reqs {
                    match &results[ri] {
                        Ok(StoreOutcome::Stored { uid, .. }) => {
                            info!(user = %slot.user, uid, "stored");
                        }
                        Ok(StoreOutcome::Duplicate) => {
                            info!(user = %slot.user, "already delivered (same delivery key); not stored again");
                        }
                        Err(e) => {
                            warn!(user = %slot.user, "not stored: {e}");
                            let f = if e.is_temporary() {
                                RcptOutcome::TempFail(format!("4.3.0 {e}"))
                            } else {
                                RcptOutcome::PermFail(550, format!("5.3.0 {e}"))
                            };
                            if !o.is_temporary() {
                                o = f;
                            }
                        }
                    }
                }
                if o.is_delivered() {
                    self.filter.stored(&slot.user, &slot.filter);
                }
                slot.outcome = Some(o);
            }
            for (rcpt, r) in p.msg.envelope.recipients.iter().zip(rcpts) {
                let o = match r {
                    Err(o) => o,
                    Ok(sis) => {
                        let mut o = RcptOutcome::Delivered;
                        for si in sis {
                            match slots[si].outcome.clone().unwrap_or(RcptOutcome::Delivered) {
                                RcptOutcome::Delivered => {}
                                t @ RcptOutcome::TempFail(_) => o = t,
                                f @ RcptOutcome::PermFail(..) => {
                                    if o.is_delivered() {
                                        o = f
                                    }
                                }
                            }
                        }
                        o
                    }
                };
                if !o.is_delivered() {
                    info!(rcpt = %rcpt, outcome = ?o, "not delivered");
                }
                report.outcomes.push((rcpt.clone(), o));
            }
        }
        reports
    }

    /// Builds one user's copy: trace headers, filter, store requests.
    fn plan_user(
        &self,
        p: &Prepared,
        user: &str,
        delivered_to: &str,
        rcpt: &str,
        now: i64,
        nl: &str,
        reqs: &mut Vec<StoreRequest>,
    ) -> Slot {
        let env = &p.msg.envelope;
        let mut slot = Slot {
            user: user.to_string(),
            reqs: vec![],
            outcome: None,
            filter: FilterOutcome::default(),
        };
        if p.facts
            .delivered_to
            .iter()
            .any(|d| d.eq_ignore_ascii_case(delivered_to))
        {
            slot.outcome = Some(RcptOutcome::PermFail(
                554,
                format!("5.4.6 mail loop: already delivered to {delivered_to}"),
            ));
            return slot;
        }
        let mut bytes = trace::headers(
            env,
            &self.config.hostname,
            &p.id,
            delivered_to,
            now,
            &p.scan.headers,
            nl,
        );
        bytes.extend_from_slice(&p.msg.message.bytes);
        let bytes = Arc::new(bytes);
        let default_folder = match (&env.folder, &p.scan.disposition) {
            (Some(f), _) => f.clone(),
            (None, ScanDisposition::Junk) => "Junk".to_string(),
            // Port 25's DMARC/SPF policy said Junk (our Authentication-Results).
            (None, ScanDisposition::Deliver)
                if crate::inbound::auth::junk_marked(&self.config, &p.msg.message.bytes) =>
            {
                "Junk".to_string()
            }
            (None, _) => spool::INBOX.to_string(),
        };
        let default_folder = match spool::normalize_name(&default_folder) {
            Ok(f) => f,
            Err(e) => {
                warn!(user, "{e}; delivering to INBOX");
                spool::INBOX.to_string()
            }
        };
        let addresses = self
            .config
            .user(user)
            .map(|u| u.addresses.clone())
            .unwrap_or_default();
        slot.filter = self.filter.filter(&FilterRequest {
            user,
            addresses: &addresses,
            envelope: env,
            recipient: rcpt,
            message: &bytes,
            spam: p.scan.spam,
            virus: p.scan.virus,
            default_folder: &default_folder,
        });
        let actions = if slot.filter.actions.is_empty() {
            vec![FilterAction::Keep { flags: vec![] }]
        } else {
            slot.filter.actions.clone()
        };
        for a in actions {
            let (folder, flags) = match a {
                FilterAction::Keep { flags } => (default_folder.clone(), flags),
                FilterAction::FileInto { folder, flags } => match spool::normalize_name(&folder) {
                    Ok(f) => (f, flags),
                    Err(e) => {
                        warn!(user, "filter: {e}; filing into {default_folder} instead");
                        (default_folder.clone(), flags)
                    }
                },
                FilterAction::Discard => continue,
                FilterAction::Reject(reason) => {
                    slot.outcome = Some(RcptOutcome::PermFail(
                        550,
                        format!("5.7.1 {}", trace::clean(&reason, 200)),
                    ));
                    slot.reqs.clear();
                    return slot;
                }
            };
            slot.reqs.push(reqs.len());
            reqs.push(StoreRequest {
                user: user.to_string(),
                mailbox: folder,
                bytes: bytes.clone(),
                flags: flags.iter().map(String::as_str).collect::<Flags>(),
                internal_date: Some(now),
                key: env.idempotency_key.clone(),
                sender: env.sender.clone(),
                message_id: p.facts.message_id.clone(),
            });
        }
        slot
    }

    /// The copy forwarded to a remote alias target.
    fn forward(&self, p: &Prepared, alias: &str, address: &str, now: i64, nl: &str) -> Generated {
        let env = &p.msg.envelope;
        let alias_addr = if alias.contains('@') {
            alias.to_string()
        } else {
            format!(
                "{alias}@{}",
                self.config
                    .local_domains
                    .first()
                    .unwrap_or(&self.config.hostname)
            )
        };
        // Delivered-To on the forwarded copy lets a loop back to us be recognised.
        let mut bytes =
            format!("Delivered-To: {}{nl}", trace::clean(&alias_addr, 320)).into_bytes();
        bytes.extend_from_slice(
            trace::received(env, &self.config.hostname, &p.id, address, now, nl).as_bytes(),
        );
        bytes.extend_from_slice(nl.as_bytes());
        bytes.extend_from_slice(&p.msg.message.bytes);
        info!(alias = %alias_addr, to = %address, "forwarding through an alias");
        Generated {
            sender: env.sender.clone(),
            recipients: vec![address.to_string()],
            bytes,
            reason: "alias".to_string(),
        }
    }
}

#[async_trait::async_trait]
impl Deliver for LocalDelivery {
    async fn deliver_batch(&self, msgs: Vec<Incoming>) -> Vec<DeliveryReport> {
        let prepared = join_all(msgs.into_iter().map(|m| self.prepare(m))).await;
        let this = self.clone();
        match tokio::task::spawn_blocking(move || {
            let r = this.route_and_store(prepared);
            // The admin page's "delivered" counter: recipients stored.
            let n = r
                .iter()
                .flat_map(|x| &x.outcomes)
                .filter(|(_, o)| matches!(o, RcptOutcome::Delivered))
                .count();
            crate::db::web::bump(&this.config.db_path(), "delivered", n as i64);
            r
        })
        .await
        {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Envelope, RawMessage, Source};
    use std::path::Path;

    fn setup(extra: &str) -> (tempfile::TempDir, LocalDelivery) {
        let d = tempfile::tempdir().unwrap();
        let text = format!(
            r#"
hostname = "zolder.thuis"
data_dir = "{}"
local_domains = ["zolder.thuis"]
postmaster = "sjoerd"
[[users]]
name = "bouke"
addresses = ["bouke@zolder.thuis"]
[[users]]
name = "sjoerd"
spool = "mbox"
[aliases]
family = ["bouke", "sjoerd", "oma@elders.example"]
{extra}
"#,
            d.path().display()
        );
        let cfg = Config::from_str_at(&text, &d.path().join("zolder.toml"), false).unwrap();
        let spool = Spool::open(&cfg).unwrap();
        (d, LocalDelivery::new(Arc::new(cfg), spool))
    }

    fn incoming(rcpts: &[&str], body: &[u8]) -> Incoming {
        Incoming {
            envelope: Envelope::new(
                Some("alice@example.org".into()),
                rcpts.iter().map(|s| s.to_string()).collect(),
                Source::Local {
                    user: "test".into(),
                },
            ),
            message: RawMessage::new(body.to_vec()),
        }
    }

    #[tokio::test]
    async fn full_mailboxes_defer_and_nothing_is_dropped() {
        let (_d, ld) = setup(
            "kees_and_bouke = [\"bouke\", \"kees\"]\n\
             [[users]]\nname = \"kees\"\nquota_messages = 2\n\
             [[users]]\nname = \"anna\"\nquota_storage = 200\n",
        );
        // One batch of three for kees: two fit, the third waits.
        let msgs = (0..3)
            .map(|i| incoming(&["kees"], format!("Subject: {i}\n\nx\n").as_bytes()))
            .collect();
        let r = ld.deliver_batch(msgs).await;
        assert!(r[0].all_delivered() && r[1].all_delivered(), "{r:?}");
        match &r[2].outcomes[0].1 {
            RcptOutcome::TempFail(t) => assert!(t.starts_with("4.2.2"), "{t}"),
            o => panic!("{o:?}"),
        }
        assert_eq!(ld.spool.usage("kees").unwrap().messages, 2);
        // An alias with a full member waits as a whole: bouke gets no copy yet.
        let r = ld
            .deliver(incoming(&["kees_and_bouke"], b"Subject: all\n\nx\n"))
            .await;
        assert!(matches!(r.outcomes[0].1, RcptOutcome::TempFail(_)), "{r:?}");
        assert_eq!(ld.spool.usage("bouke").unwrap().messages, 0);
        // Storage quota: a small message fits, a big one waits; users without a
        // quota are never checked.
        let small = ld.deliver(incoming(&["anna"], b"Subject: s\n\nx\n")).await;
        assert!(small.all_delivered(), "{small:?}");
        let big = vec![b'x'; 300];
        let mut body = b"Subject: big\n\n".to_vec();
        body.extend_from_slice(&big);
        let r = ld.deliver(incoming(&["anna"], &body)).await;
        assert!(matches!(r.outcomes[0].1, RcptOutcome::TempFail(_)), "{r:?}");
        let r = ld.deliver(incoming(&["bouke"], &body)).await;
        assert!(r.all_delivered(), "{r:?}");
    }

    #[tokio::test]
    async fn alias_fans_out_and_forwards() {
        let (_d, ld) = setup("");
        let msg = b"Subject: hi\nMessage-ID: <m1@x>\n\nbody\n";
        let r = ld
            .deliver(incoming(&["family@zolder.thuis", "nobody"], msg))
            .await;
        assert_eq!(r.outcomes[0].1, RcptOutcome::Delivered);
        assert!(matches!(r.outcomes[1].1, RcptOutcome::PermFail(550, _)));
        assert_eq!(r.generated.len(), 1);
        assert_eq!(r.generated[0].recipients, ["oma@elders.example"]);
        assert!(r.generated[0].bytes.ends_with(msg));
        let s = ld.spool();
        let b = s.read_message("bouke", "INBOX", 1).unwrap();
        assert!(b.ends_with(msg));
        assert!(b.starts_with(b"Return-Path: <alice@example.org>\nDelivered-To: bouke@zolder.thuis\nReceived: by zolder.thuis"));
        let sj = s.read_message("sjoerd", "INBOX", 1).unwrap();
        assert!(sj.ends_with(msg));
    }

    #[tokio::test]
    async fn delivered_to_loop_is_refused() {
        let (_d, ld) = setup("");
        let msg = b"Delivered-To: bouke@zolder.thuis\nSubject: again\n\nx\n";
        let r = ld.deliver(incoming(&["bouke"], msg)).await;
        assert!(
            matches!(&r.outcomes[0].1, RcptOutcome::PermFail(554, t) if t.contains("loop")),
            "{r:?}"
        );
    }

    struct Junker;
    #[async_trait::async_trait]
    impl ScanStage for Junker {
        async fn scan(&self, _e: &crate::message::Envelope, _m: &[u8]) -> ScanOutcome {
            ScanOutcome {
                disposition: ScanDisposition::Junk,
                headers: vec![("X-Spam-Flag".into(), "YES".into())],
                ..ScanOutcome::deliver()
            }
        }
    }
    struct FileAll;
    impl FilterStage for FileAll {
        fn filter(&self, req: &FilterRequest<'_>) -> FilterOutcome {
            assert_eq!(req.default_folder, "Junk");
            FilterOutcome {
                actions: vec![
                    FilterAction::FileInto {
                        folder: "Lists.Rust".into(),
                        flags: vec!["\\Seen".into()],
                    },
                    FilterAction::Keep { flags: vec![] },
                ],
                ..Default::default()
            }
        }
    }

    #[tokio::test]
    async fn scan_and_filter_seams() {
        let (_d, ld) = setup("");
        let ld = ld
            .with_scan(Arc::new(Junker))
            .with_filter(Arc::new(FileAll));
        let r = ld
            .deliver(incoming(&["bouke"], b"Subject: s\n\nspam\n"))
            .await;
        assert!(r.all_delivered(), "{r:?}");
        let s = ld.spool();
        let j = s.read_message("bouke", "Junk", 1).unwrap();
        assert!(String::from_utf8_lossy(&j).contains("\nX-Spam-Flag: YES\nSubject: s\n"));
        let st = s.select("bouke", "Lists.Rust").unwrap();
        assert!(st.messages[0].flags.contains("\\Seen"));
    }

    #[test]
    fn header_facts_from_broken_input() {
        let f = header_facts(b"Received: a\nReceived: b\nDelivered-To: X@Y\nMessage-ID: <a@b>\n\n");
        assert_eq!(f.hops, 2);
        assert_eq!(f.delivered_to, ["x@y"]);
        assert_eq!(f.message_id.as_deref(), Some("a@b"));
        let _ = header_facts(b"\0\0\xff\xfe not a header");
        let _ = Path::new("");
    }
}
