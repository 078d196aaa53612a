//! SORT and THREAD (RFC 5256) as pure functions: what each message contributes
//! ([`SortMsg`], built from its header), base-subject extraction, the SORT order,
//! the ORDEREDSUBJECT and REFERENCES threading algorithms, and the `* THREAD`
//! response syntax.
//!
//! No I/O: the session reads the headers and hands them here.
//!
//! # Security
//! Headers are untrusted. The REFERENCES algorithm never creates a loop (every link
//! is checked against the ancestor chain), the number of references taken from one
//! message is bounded by [`MAX_REFERENCES`], and the tree is cut at [`MAX_DEPTH`]
//! so every recursive walk over it is bounded.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt::Write as _;

use mail_parser::{Address, HeaderValue, MessageParser};

use super::types::{SortCriterion, SortKey};

/// References taken from one message's header (a longer chain is cut at the front:
/// the last ones, nearest the message, matter most).
pub const MAX_REFERENCES: usize = 100;

/// Deepest thread nesting kept; a deeper reply starts a thread of its own. Bounds
/// the recursion over the tree (a crafted chain of replies cannot exhaust the stack).
pub const MAX_DEPTH: usize = 256;

/// What SORT and THREAD need of one message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SortMsg {
    pub seq: u32,
    pub uid: u32,
    pub size: u32,
    /// INTERNALDATE (ARRIVAL).
    pub arrival: i64,
    /// The Date: header, or INTERNALDATE when it has none that parses (RFC 5256 §3).
    pub sent: i64,
    /// Whether `sent` came from a Date: header.
    pub dated: bool,
    /// Base subject, upper-cased for i;ascii-casemap comparison.
    pub subject: String,
    /// Whether base-subject extraction removed a reply/forward marker.
    pub is_reply: bool,
    /// addr-mailbox (local part) of the first From/To/Cc address, upper-cased.
    pub from: String,
    pub to: String,
    pub cc: String,
    /// RFC 5957 display name of the first From/To address (else its address),
    /// upper-cased.
    pub display_from: String,
    pub display_to: String,
    pub message_id: Option<String>,
    /// References, or else the first In-Reply-To id; oldest first.
    pub references: Vec<String>,
}

/// The first address of a field as (display name, addr-spec); a group counts as
/// its name (the ENVELOPE's group-start marker, whose mailbox is the group name).
fn first_address<'a>(a: Option<&'a Address<'_>>) -> (Option<&'a str>, &'a str) {
    match a {
        Some(Address::List(l)) => l
            .first()
            .map_or((None, ""), |x| (x.name.as_deref(), x.address.as_deref().unwrap_or(""))),
        Some(Address::Group(g)) => match g.first() {
            Some(g) => match &g.name {
                Some(n) => (None, n.as_ref()),
                None => g.addresses.first().map_or((None, ""), |x| {
                    (x.name.as_deref(), x.address.as_deref().unwrap_or(""))
                }),
            },
            None => (None, ""),
        },
        None => (None, ""),
    }
}

/// RFC 5256 §3: the addr-mailbox (local part) of the first address, case-folded.
fn first_mailbox(a: Option<&Address<'_>>) -> String {
    let (_, addr) = first_address(a);
    let local = addr.rsplit_once('@').map_or(addr, |(l, _)| l);
    local.to_ascii_uppercase()
}

/// RFC 5957 §3: the display name of the first address, else its addr-spec.
fn first_display(a: Option<&Address<'_>>) -> String {
    let (name, addr) = first_address(a);
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => n.to_uppercase(),
        None => addr.to_uppercase(),
    }
}

fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|x| x.to_string()).collect(),
        _ => Vec::new(),
    }
}

impl SortMsg {
    /// Builds the summary from the message's header bytes (the body may be absent).
    pub fn from_header(seq: u32, uid: u32, size: u32, arrival: i64, header: &[u8]) -> SortMsg {
        let mut s = SortMsg {
            seq,
            uid,
            size,
            arrival,
            sent: arrival,
            ..SortMsg::default()
        };
        let Some(m) = MessageParser::default().parse_headers(header) else {
            return s;
        };
        if let Some(d) = m.date().filter(|d| d.is_valid()) {
            s.sent = d.to_timestamp();
            s.dated = true;
        }
        let (base, reply) = base_subject(m.subject().unwrap_or(""));
        s.subject = base.to_ascii_uppercase();
        s.is_reply = reply;
        s.from = first_mailbox(m.from());
        s.to = first_mailbox(m.to());
        s.cc = first_mailbox(m.cc());
        s.display_from = first_display(m.from());
        s.display_to = first_display(m.to());
        s.message_id = m.message_id().map(str::to_string);
        let mut refs = ids(m.references());
        if refs.is_empty() {
            refs = ids(m.in_reply_to()).into_iter().take(1).collect();
        }
        if refs.len() > MAX_REFERENCES {
            refs.drain(..refs.len() - MAX_REFERENCES);
        }
        s.references = refs;
        s
    }
}

/// RFC 5256 §2.1 base subject (of an already decoded subject) and whether a
/// reply/forward marker was removed on the way.
pub fn base_subject(subject: &str) -> (String, bool) {
    // (1) Whitespace runs (tabs, folding) become one space.
    let mut s = String::with_capacity(subject.len());
    for c in subject.chars() {
        if c.is_whitespace() {
            if !s.ends_with(' ') {
                s.push(' ');
            }
        } else {
            s.push(c);
        }
    }
    let mut reply = false;
    loop {
        // (2) Trailing "(fwd)" and spaces.
        loop {
            let t = s.trim_end_matches(' ');
            let lower_end = t.len() >= 5 && t[t.len() - 5..].eq_ignore_ascii_case("(fwd)");
            if lower_end {
                s.truncate(t.len() - 5);
                reply = true;
            } else if t.len() != s.len() {
                s.truncate(t.len());
            } else {
                break;
            }
        }
        // (3)-(5) Leaders and blobs, until nothing more comes off.
        loop {
            let mut changed = false;
            while let Some(rest) = strip_leader(&s) {
                if rest.1 {
                    reply = true;
                }
                s = rest.0;
                changed = true;
            }
            if let Some(after) = strip_blob(&s)
                && !after.is_empty()
            {
                s = after;
                changed = true;
            }
            if !changed {
                break;
            }
        }
        // (6) "[fwd: ...]" wraps the whole subject.
        if s.len() >= 6 && s[..5].eq_ignore_ascii_case("[fwd:") && s.ends_with(']') {
            s = s[5..s.len() - 1].to_string();
            reply = true;
            continue;
        }
        return (s, reply);
    }
}

/// `subj-blob = "[" *BLOBCHAR "]" *WSP`: the text after one leading blob.
fn strip_blob(s: &str) -> Option<String> {
    let rest = s.strip_prefix('[')?;
    let close = rest.find([']', '['])?;
    if rest.as_bytes()[close] != b']' {
        return None;
    }
    Some(rest[close + 1..].trim_start_matches(' ').to_string())
}

/// One `subj-leader = (*subj-blob subj-refwd) / WSP` off the front: the rest, and
/// whether it was a re/fwd leader.
fn strip_leader(s: &str) -> Option<(String, bool)> {
    if let Some(r) = s.strip_prefix(' ') {
        return Some((r.to_string(), false));
    }
    // *subj-blob
    let mut rest = s.to_string();
    while let Some(r) = strip_blob(&rest) {
        rest = r;
    }
    // subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
    let lower = rest.to_ascii_lowercase();
    let n = if lower.starts_with("re") {
        2
    } else if lower.starts_with("fwd") {
        3
    } else if lower.starts_with("fw") {
        2
    } else {
        return None;
    };
    let mut r = rest[n..].trim_start_matches(' ').to_string();
    if r.starts_with('[')
        && let Some(after) = strip_blob(&r)
    {
        r = after;
    }
    let r = r.strip_prefix(':')?;
    Some((r.to_string(), true))
}

fn cmp_key(a: &SortMsg, b: &SortMsg, k: SortKey) -> Ordering {
    match k {
        SortKey::Arrival => a.arrival.cmp(&b.arrival),
        SortKey::Date => a.sent.cmp(&b.sent),
        SortKey::Size => a.size.cmp(&b.size),
        SortKey::Subject => a.subject.cmp(&b.subject),
        SortKey::From => a.from.cmp(&b.from),
        SortKey::To => a.to.cmp(&b.to),
        SortKey::Cc => a.cc.cmp(&b.cc),
        SortKey::DisplayFrom => a.display_from.cmp(&b.display_from),
        SortKey::DisplayTo => a.display_to.cmp(&b.display_to),
    }
}

/// Sorts by the criteria in order; ties end in sequence-number order (RFC 5256 §3).
pub fn sort(msgs: &mut [SortMsg], criteria: &[SortCriterion]) {
    msgs.sort_by(|a, b| {
        for c in criteria {
            let o = cmp_key(a, b, c.key);
            let o = if c.reverse { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        a.seq.cmp(&b.seq)
    });
}

/// A thread tree node: a message (index into the input) or a dummy (`None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub msg: Option<usize>,
    pub children: Vec<Node>,
}

impl Node {
    fn leaf(i: usize) -> Node {
        Node {
            msg: Some(i),
            children: Vec::new(),
        }
    }
}

/// THREAD=ORDEREDSUBJECT (RFC 5256 §3): messages grouped by base subject; in each
/// group the earliest is the parent and the rest its children, by sent date;
/// groups ordered by the sent date of their first message.
pub fn ordered_subject(msgs: &[SortMsg]) -> Vec<Node> {
    let mut order: Vec<usize> = (0..msgs.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&msgs[a], &msgs[b]);
        x.subject
            .cmp(&y.subject)
            .then(x.sent.cmp(&y.sent))
            .then(x.seq.cmp(&y.seq))
    });
    let mut threads: Vec<Node> = Vec::new();
    let mut last_subject: Option<&str> = None;
    for i in order {
        let subj = msgs[i].subject.as_str();
        match threads.last_mut() {
            Some(t) if last_subject == Some(subj) => t.children.push(Node::leaf(i)),
            _ => threads.push(Node::leaf(i)),
        }
        last_subject = Some(subj);
    }
    threads.sort_by(|a, b| node_order(msgs, a, b));
    threads
}

/// The sent date and sequence number a node sorts by (a dummy: its first child's).
fn node_key(msgs: &[SortMsg], n: &Node) -> (i64, u32) {
    let mut cur = n;
    loop {
        match cur.msg {
            Some(i) => return (msgs[i].sent, msgs[i].seq),
            None => match cur.children.first() {
                Some(c) => cur = c,
                None => return (i64::MAX, u32::MAX),
            },
        }
    }
}

fn node_order(msgs: &[SortMsg], a: &Node, b: &Node) -> Ordering {
    node_key(msgs, a).cmp(&node_key(msgs, b))
}

/// THREAD=REFERENCES (RFC 5256 §3, after Zawinski's algorithm).
pub fn references(msgs: &[SortMsg]) -> Vec<Node> {
    // Containers: one per Message-ID seen (messages and references).
    struct C {
        msg: Option<usize>,
        parent: Option<usize>,
        children: Vec<usize>,
    }
    let mut cs: Vec<C> = Vec::new();
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    let new = |cs: &mut Vec<C>, msg: Option<usize>| {
        cs.push(C {
            msg,
            parent: None,
            children: Vec::new(),
        });
        cs.len() - 1
    };
    // Whether `anc` is `c` or one of its ancestors.
    fn is_ancestor(cs: &[C], anc: usize, mut c: usize) -> bool {
        loop {
            if c == anc {
                return true;
            }
            match cs[c].parent {
                Some(p) => c = p,
                None => return false,
            }
        }
    }
    fn unlink(cs: &mut [C], c: usize) {
        if let Some(p) = cs[c].parent.take() {
            cs[p].children.retain(|&x| x != c);
        }
    }
    fn link(cs: &mut [C], parent: usize, child: usize) {
        cs[child].parent = Some(parent);
        cs[parent].children.push(child);
    }

    // (1) Containers for messages; a duplicate or missing Message-ID gets a unique one.
    let mut own: Vec<usize> = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let c = match m.message_id.as_deref() {
            Some(id) => match by_id.get(id) {
                Some(&c) if cs[c].msg.is_none() => {
                    cs[c].msg = Some(i);
                    c
                }
                Some(_) => new(&mut cs, Some(i)),
                None => {
                    let c = new(&mut cs, Some(i));
                    by_id.insert(id, c);
                    c
                }
            },
            None => new(&mut cs, Some(i)),
        };
        own.push(c);
    }
    for (i, m) in msgs.iter().enumerate() {
        let me = own[i];
        // (1A) Link the references in order, parent before child.
        let mut prev: Option<usize> = None;
        for r in &m.references {
            let c = match by_id.get(r.as_str()) {
                Some(&c) => c,
                None => {
                    let c = new(&mut cs, None);
                    by_id.insert(r.as_str(), c);
                    c
                }
            };
            if let Some(p) = prev
                && cs[c].parent.is_none()
                && !is_ancestor(&cs, c, p)
            {
                link(&mut cs, p, c);
            }
            prev = Some(c);
        }
        // (1B) The message is a child of its last reference (replacing a link from
        // a truncated References), unless that would make a loop.
        match prev {
            Some(p) if p != me && !is_ancestor(&cs, me, p) => {
                unlink(&mut cs, me);
                link(&mut cs, p, me);
            }
            Some(_) => {}
            // §4 step 1 B: "if this message has no references, it will now have no
            // parent" (a parent another message's References claimed is dropped).
            None => unlink(&mut cs, me),
        }
    }

    // (2)-(3) Root set; build the owned tree.
    // Subtrees below MAX_DEPTH become threads of their own, so every later
    // recursion over the tree is bounded.
    fn build(cs: &[C], c: usize, depth: usize, cut: &mut Vec<usize>) -> Node {
        let children = if depth >= MAX_DEPTH {
            cut.extend(&cs[c].children);
            Vec::new()
        } else {
            cs[c]
                .children
                .iter()
                .map(|&k| build(cs, k, depth + 1, cut))
                .collect()
        };
        Node {
            msg: cs[c].msg,
            children,
        }
    }
    let mut pending: Vec<usize> = (0..cs.len()).filter(|&c| cs[c].parent.is_none()).collect();
    let mut roots: Vec<Node> = Vec::new();
    while let Some(c) = pending.pop() {
        let mut cut = Vec::new();
        roots.push(build(&cs, c, 0, &mut cut));
        pending.extend(cut);
    }

    // (4) Prune dummies.
    fn prune(children: Vec<Node>, at_root: bool) -> Vec<Node> {
        let mut out = Vec::new();
        for mut n in children {
            n.children = prune(std::mem::take(&mut n.children), false);
            if n.msg.is_none() {
                if n.children.is_empty() {
                    continue;
                }
                if !at_root || n.children.len() == 1 {
                    out.extend(n.children);
                    continue;
                }
            }
            out.push(n);
        }
        out
    }
    let mut roots = prune(roots, true);

    // (5) Group the root set by base subject.
    let subject_of = |n: &Node| -> Option<(usize, bool)> {
        let i = match n.msg {
            Some(i) => i,
            None => n.children.iter().filter_map(|c| c.msg).min_by_key(|&i| {
                let m = &msgs[i];
                (m.sent, m.seq)
            })?,
        };
        (!msgs[i].subject.is_empty()).then_some((i, msgs[i].is_reply))
    };
    let mut table: HashMap<&str, usize> = HashMap::new();
    for (r, n) in roots.iter().enumerate() {
        let Some((i, reply)) = subject_of(n) else {
            continue;
        };
        let subj = msgs[i].subject.as_str();
        match table.get(subj) {
            None => {
                table.insert(subj, r);
            }
            Some(&o) => {
                let other = &roots[o];
                let other_reply = subject_of(other).is_some_and(|x| x.1);
                // §4 step 5 B: only a message (not a dummy) in the table is replaced,
                // by a dummy or by a non-reply when it is a reply.
                if other.msg.is_some() && (n.msg.is_none() || (other_reply && !reply)) {
                    table.insert(subj, r);
                }
            }
        }
    }
    let mut merged: Vec<Option<Node>> = roots.drain(..).map(Some).collect();
    for r in 0..merged.len() {
        let Some(n) = merged[r].as_ref() else {
            continue;
        };
        let Some((i, reply)) = subject_of(n) else {
            continue;
        };
        let Some(&t) = table.get(msgs[i].subject.as_str()) else {
            continue;
        };
        if t == r {
            continue;
        }
        let Some(mut this) = merged[r].take() else {
            continue;
        };
        let Some(entry) = merged[t].as_mut() else {
            merged[r] = Some(this);
            continue;
        };
        let entry_reply = entry.msg.is_some_and(|e| msgs[e].is_reply);
        if entry.msg.is_none() && this.msg.is_none() {
            entry.children.append(&mut this.children);
        } else if entry.msg.is_none() || (this.msg.is_some() && reply && !entry_reply) {
            // Under the dummy; or a reply under the original it answers.
            entry.children.push(this);
        } else {
            let old = std::mem::replace(
                entry,
                Node {
                    msg: None,
                    children: Vec::new(),
                },
            );
            entry.children = vec![old, this];
        }
    }
    let mut roots: Vec<Node> = merged.into_iter().flatten().collect();

    // (6) Siblings by sent date (a dummy by its first child), ties by sequence.
    fn sort_tree(msgs: &[SortMsg], nodes: &mut [Node]) {
        for n in nodes.iter_mut() {
            sort_tree(msgs, &mut n.children);
        }
        nodes.sort_by(|a, b| node_order(msgs, a, b));
    }
    sort_tree(msgs, &mut roots);
    roots
}

/// Writes the threads after `* THREAD`: `(3 6 (4 23)(44 7 96))`; `id` gives the
/// number shown (sequence number or UID).
pub fn write_threads(out: &mut String, msgs: &[SortMsg], threads: &[Node], uid: bool) {
    fn node(out: &mut String, msgs: &[SortMsg], n: &Node, uid: bool) {
        let mut cur = n;
        loop {
            if let Some(i) = cur.msg {
                let m = &msgs[i];
                let _ = write!(out, "{}", if uid { m.uid } else { m.seq });
            }
            match cur.children.len() {
                0 => return,
                1 => {
                    if cur.msg.is_some() {
                        out.push(' ');
                    }
                    cur = &cur.children[0];
                }
                _ => {
                    if cur.msg.is_some() {
                        out.push(' ');
                    }
                    for c in &cur.children {
                        out.push('(');
                        node(out, msgs, c, uid);
                        out.push(')');
                    }
                    return;
                }
            }
        }
    }
    for t in threads {
        out.push('(');
        node(out, msgs, t, uid);
        out.push(')');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects() {
        let b = |s: &str| base_subject(s);
        assert_eq!(b("Hello"), ("Hello".into(), false));
        assert_eq!(b("Re: Hello"), ("Hello".into(), true));
        assert_eq!(b("RE: re:  Fwd: Hello"), ("Hello".into(), true));
        assert_eq!(b("Re[2]: Hello"), ("Hello".into(), true));
        assert_eq!(b("[zolder-dev] Re: Hello (fwd)"), ("Hello".into(), true));
        assert_eq!(b("[Fwd: Re: Hello]"), ("Hello".into(), true));
        assert_eq!(b("  Hello\t  world  "), ("Hello world".into(), false));
        // A blob that would leave nothing stays.
        assert_eq!(b("[only]"), ("[only]".into(), false));
        assert_eq!(b("Reply to all"), ("Reply to all".into(), false));
        assert_eq!(b(""), (String::new(), false));
    }

    fn m(seq: u32, subject: &str, sent: i64, id: &str, refs: &[&str]) -> SortMsg {
        let (s, r) = base_subject(subject);
        SortMsg {
            seq,
            uid: seq * 10,
            sent,
            arrival: sent,
            subject: s.to_ascii_uppercase(),
            is_reply: r,
            message_id: (!id.is_empty()).then(|| id.to_string()),
            references: refs.iter().map(|x| x.to_string()).collect(),
            ..SortMsg::default()
        }
    }

    fn show(msgs: &[SortMsg], t: &[Node]) -> String {
        let mut s = String::new();
        write_threads(&mut s, msgs, t, false);
        s
    }

    #[test]
    fn sort_with_reverse_and_ties() {
        let mut v = vec![
            m(1, "b", 30, "", &[]),
            m(2, "a", 10, "", &[]),
            m(3, "Re: b", 20, "", &[]),
        ];
        sort(
            &mut v,
            &[SortCriterion {
                reverse: false,
                key: SortKey::Subject,
            }],
        );
        assert_eq!(v.iter().map(|x| x.seq).collect::<Vec<_>>(), vec![2, 1, 3]);
        sort(
            &mut v,
            &[SortCriterion {
                reverse: true,
                key: SortKey::Date,
            }],
        );
        assert_eq!(v.iter().map(|x| x.seq).collect::<Vec<_>>(), vec![1, 3, 2]);
    }

    #[test]
    fn ordered_subject_threads() {
        let v = vec![
            m(1, "Plans", 10, "", &[]),
            m(2, "Other", 20, "", &[]),
            m(3, "Re: Plans", 30, "", &[]),
            m(4, "Re: Plans", 25, "", &[]),
        ];
        assert_eq!(show(&v, &ordered_subject(&v)), "(1 (4)(3))(2)");
    }

    #[test]
    fn references_threads() {
        let v = vec![
            m(1, "Plans", 10, "a", &[]),
            m(2, "Re: Plans", 20, "b", &["a"]),
            m(3, "Re: Plans", 30, "c", &["a", "b"]),
            m(4, "Re: Plans", 40, "d", &["a"]),
            m(5, "Other", 15, "e", &[]),
            // Parent never seen; two children of the missing one: a dummy root.
            m(6, "Lost", 50, "f", &["zz"]),
            m(7, "Re: Lost", 60, "g", &["zz"]),
            // Same subject, no references: joined to the "Plans" thread as a reply.
            m(8, "Re: Plans", 70, "h", &[]),
        ];
        assert_eq!(show(&v, &references(&v)), "(1 (2 3)(4)(8))(5)((6)(7))");
    }

    #[test]
    fn references_survive_loops_and_duplicates() {
        let v = vec![
            m(1, "x", 10, "a", &["b"]),
            m(2, "y", 20, "b", &["a"]),
            m(3, "z", 30, "a", &[]),
        ];
        // No panic, no message lost.
        let t = references(&v);
        let s = show(&v, &t);
        for n in ["1", "2", "3"] {
            assert!(s.contains(n), "{s}");
        }
    }

    #[test]
    fn very_deep_chains_are_cut_not_overflowed() {
        let n = 3 * MAX_DEPTH as u32;
        let v: Vec<SortMsg> = (1..=n)
            .map(|i| {
                let id = format!("m{i}");
                let parent = format!("m{}", i - 1);
                let refs: Vec<&str> = if i > 1 { vec![&parent] } else { vec![] };
                m(i, "chain", i as i64, &id, &refs)
            })
            .collect();
        let t = references(&v);
        let s = show(&v, &t);
        for i in 1..=n {
            assert!(
                s.contains(&format!(" {i} "))
                    || s.contains(&format!("({i} "))
                    || s.contains(&format!(" {i})")),
                "{i}"
            );
        }
        assert!(t.len() <= 4, "{}", t.len());
    }

    #[test]
    fn header_summary() {
        let h = b"From: \"Bouke\" <Bouke@Zolder.Thuis>\r\nTo: an@x.nl\r\n\
Subject: =?UTF-8?Q?Re:_caf=C3=A9?=\r\nDate: Tue, 5 Mar 2024 10:00:00 +0100\r\n\
Message-ID: <m2@x>\r\nIn-Reply-To: <m1@x> <junk@x>\r\n\r\n";
        let s = SortMsg::from_header(3, 9, 100, 5, h);
        assert_eq!(s.from, "BOUKE");
        assert_eq!(s.to, "AN");
        assert_eq!(s.subject, "CAFé");
        assert!(s.is_reply);
        assert_eq!(s.sent, 1709629200);
        assert_eq!(s.message_id.as_deref(), Some("m2@x"));
        assert_eq!(s.references, vec!["m1@x".to_string()]);
    }
}
