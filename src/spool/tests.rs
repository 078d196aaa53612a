//! Unit tests of the mail store (moved out of `mod.rs` unchanged).

use super::message::{header_end_in, read_header};
use super::*;

fn spool(kind: SpoolKind) -> (tempfile::TempDir, Spool) {
    let d = tempfile::tempdir().unwrap();
    let s = Spool::open_with(d.path(), "test.host", vec![("bouke".into(), kind)]).unwrap();
    (d, s)
}

#[test]
fn crlf_sizes() {
    assert_eq!(crlf_size(b"a\nb\r\nc\n"), 9);
    assert_eq!(to_crlf(b"a\nb\r\n").as_ref(), b"a\r\nb\r\n");
    assert!(matches!(to_crlf(b"a\r\n"), Cow::Borrowed(_)));
}

#[test]
fn names() {
    assert_eq!(normalize_name("inBox").unwrap(), "INBOX");
    for bad in ["", "a/b", ".a", "a.", "a..b", "x\ty"] {
        assert!(normalize_name(bad).is_err(), "{bad:?}");
    }
    assert_eq!(normalize_name("Work.2025").unwrap(), "Work.2025");
}

#[test]
fn default_folders_and_special_use() {
    let (_d, s) = spool(SpoolKind::Maildir);
    let boxes = s.mailboxes("bouke").unwrap();
    let names: Vec<_> = boxes.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["Drafts", "INBOX", "Junk", "Sent", "Trash"]);
    assert_eq!(boxes[3].special_use.as_deref(), Some("\\Sent"));
    assert!(s.maildir_root("bouke").join(".Junk/cur").is_dir());
    assert!(matches!(
        s.mailboxes("nobody"),
        Err(SpoolError::UnknownUser(_))
    ));
}

fn roundtrip(kind: SpoolKind) {
    let (_d, s) = spool(kind);
    let m1 = b"Subject: one\n\nFrom the start\nbody\n".to_vec();
    let m2 = b"Subject: two\r\n\r\nbody\r\n".to_vec();
    let a1 = s
        .append("bouke", "INBOX", m1.clone(), &Flags::new(), Some(1000))
        .unwrap();
    let a2 = s
        .append("bouke", "inbox", m2.clone(), &Flags::parse("\\Seen"), None)
        .unwrap();
    assert_eq!((a1.uid, a2.uid), (1, 2));
    let st = s.select("bouke", "INBOX").unwrap();
    assert_eq!(st.messages.len(), 2);
    assert_eq!(st.uidnext, 3);
    assert_eq!(st.messages[0].size, m1.len() as u64 + 4);
    assert_eq!(st.messages[0].internal_date, 1000);
    assert!(st.messages[1].flags.contains("\\Seen"));
    assert_eq!(s.read_message("bouke", "INBOX", 1).unwrap(), m1);
    assert_eq!(s.read_message("bouke", "INBOX", 2).unwrap(), m2);

    let before = st.highestmodseq;
    let r = s
        .store_flags(
            "bouke",
            "INBOX",
            &[1],
            FlagOp::Add,
            &Flags::parse("\\Flagged $Junk"),
            None,
        )
        .unwrap();
    assert_eq!(r.updated.len(), 1);
    assert!(r.updated[0].modseq > before);
    // CONDSTORE: unchanged since an old MODSEQ fails.
    let r = s
        .store_flags(
            "bouke",
            "INBOX",
            &[1],
            FlagOp::Add,
            &Flags::parse("\\Seen"),
            Some(before),
        )
        .unwrap();
    assert_eq!(r.failed, vec![1]);
    let ch = s.changes_since("bouke", "INBOX", before).unwrap();
    assert_eq!(ch.changed.len(), 1);
    assert_eq!(ch.changed[0].flags.to_db(), "$Junk \\Flagged");
    assert_eq!(s.read_message("bouke", "INBOX", 1).unwrap(), m1);

    let c = s.copy("bouke", "INBOX", &[1, 2, 99], "Trash").unwrap();
    assert_eq!(c.uids, vec![(1, 1), (2, 2)]);
    assert_eq!(s.read_message("bouke", "Trash", 2).unwrap(), m2);
    let t = s.select("bouke", "Trash").unwrap();
    assert!(t.messages[0].flags.contains("\\Flagged"));
    assert_eq!(t.messages[0].internal_date, 1000);

    let ms = s.highestmodseq_of("INBOX");
    assert_eq!(s.expunge("bouke", "INBOX", &[1]).unwrap(), vec![1]);
    let st = s.select("bouke", "INBOX").unwrap();
    assert_eq!(
        st.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
        vec![2]
    );
    assert_eq!(s.read_message("bouke", "INBOX", 2).unwrap(), m2);
    assert_eq!(
        s.changes_since("bouke", "INBOX", ms).unwrap().vanished,
        vec![1]
    );
    let a3 = s
        .append("bouke", "INBOX", m1.clone(), &Flags::new(), None)
        .unwrap();
    assert_eq!(a3.uid, 3, "UIDs are not reused");
    assert_eq!(s.read_message("bouke", "INBOX", 3).unwrap(), m1);
}

impl Spool {
    fn highestmodseq_of(&self, mb: &str) -> u64 {
        self.status("bouke", mb).unwrap().highestmodseq
    }
}

#[test]
fn maildir_roundtrip() {
    roundtrip(SpoolKind::Maildir);
}

#[test]
fn mbox_roundtrip() {
    roundtrip(SpoolKind::Mbox);
}

#[test]
fn maildir_flags_in_file_names_and_external_changes() {
    let (_d, s) = spool(SpoolKind::Maildir);
    s.append(
        "bouke",
        "INBOX",
        b"S: a\n\nx\n".to_vec(),
        &Flags::new(),
        None,
    )
    .unwrap();
    let root = s.maildir_root("bouke");
    assert_eq!(std::fs::read_dir(root.join("new")).unwrap().count(), 1);
    s.store_flags(
        "bouke",
        "INBOX",
        &[1],
        FlagOp::Set,
        &Flags::parse("\\Seen \\Answered"),
        None,
    )
    .unwrap();
    let cur: Vec<_> = std::fs::read_dir(root.join("cur"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(cur.len(), 1);
    assert!(cur[0].ends_with(":2,RS"), "{cur:?}");
    // Another program flags it, and drops in a new message.
    let old = root.join("cur").join(&cur[0]);
    let newname = cur[0].replace(":2,RS", ":2,FRS");
    std::fs::rename(&old, root.join("cur").join(&newname)).unwrap();
    std::fs::write(root.join("new").join("123.ext.host"), b"S: b\n\ny\n").unwrap();
    let st = s.select("bouke", "INBOX").unwrap();
    assert_eq!(st.messages.len(), 2);
    assert!(st.messages[0].flags.contains("\\Flagged"));
    assert_eq!(st.messages[1].size, 11);
    // And removes one.
    std::fs::remove_file(root.join("cur").join(&newname)).unwrap();
    let st = s.select("bouke", "INBOX").unwrap();
    assert_eq!(
        st.messages.iter().map(|m| m.uid).collect::<Vec<_>>(),
        vec![2]
    );
}

#[test]
fn mailbox_create_rename_delete() {
    let (_d, s) = spool(SpoolKind::Maildir);
    s.create_mailbox("bouke", "Work").unwrap();
    s.create_mailbox("bouke", "Work.2025").unwrap();
    assert!(matches!(
        s.create_mailbox("bouke", "Work"),
        Err(SpoolError::MailboxExists { .. })
    ));
    s.append(
        "bouke",
        "Work.2025",
        b"S: w\n\nw\n".to_vec(),
        &Flags::new(),
        None,
    )
    .unwrap();
    s.rename_mailbox("bouke", "Work", "Job").unwrap();
    let names: Vec<_> = s
        .mailboxes("bouke")
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert!(names.contains(&"Job.2025".to_string()));
    assert!(!names.contains(&"Work".to_string()));
    assert_eq!(
        s.read_message("bouke", "Job.2025", 1).unwrap(),
        b"S: w\n\nw\n"
    );
    s.delete_mailbox("bouke", "Job.2025").unwrap();
    assert!(!s.maildir_root("bouke").join(".Job.2025").exists());
    assert!(matches!(
        s.delete_mailbox("bouke", "INBOX"),
        Err(SpoolError::Protected(_))
    ));
    // INBOX rename moves the messages.
    s.append(
        "bouke",
        "INBOX",
        b"S: i\n\ni\n".to_vec(),
        &Flags::new(),
        None,
    )
    .unwrap();
    s.rename_mailbox("bouke", "INBOX", "Old").unwrap();
    assert_eq!(s.select("bouke", "INBOX").unwrap().messages.len(), 0);
    assert_eq!(s.select("bouke", "Old").unwrap().messages.len(), 1);
}

#[test]
fn keyed_batch_stores_once() {
    for kind in [SpoolKind::Maildir, SpoolKind::Mbox] {
        let (_d, s) = spool(kind);
        let mk = || {
            let mut r = StoreRequest::new("bouke", "INBOX", b"S: k\n\nk\n".to_vec());
            r.key = Some("pop3:acct:UIDL1".into());
            r
        };
        let first = s.store_batch(vec![mk()]);
        assert!(matches!(first[0], Ok(StoreOutcome::Stored { uid: 1, .. })));
        let again = s.store_batch(vec![mk(), mk()]);
        assert!(
            again
                .iter()
                .all(|r| matches!(r, Ok(StoreOutcome::Duplicate)))
        );
        assert_eq!(s.select("bouke", "INBOX").unwrap().messages.len(), 1);
    }
}

#[test]
fn keyed_maildir_file_left_by_a_crash_is_adopted_not_duplicated() {
    let (_d, s) = spool(SpoolKind::Maildir);
    let mut r = StoreRequest::new("bouke", "INBOX", b"S: k\n\nk\n".to_vec());
    r.key = Some("imap:a:INBOX:7:1".into());
    s.store_batch(vec![r.clone()]);
    // Simulate "renamed but not committed": forget the index row and key.
    {
        let conn = s.conn().unwrap();
        conn.execute_batch("DELETE FROM messages; DELETE FROM delivery_keys;")
            .unwrap();
    }
    let out = s.store_batch(vec![r]);
    assert!(matches!(out[0], Ok(StoreOutcome::Stored { .. })));
    let files = std::fs::read_dir(s.maildir_root("bouke").join("new"))
        .unwrap()
        .count();
    assert_eq!(files, 1);
    assert_eq!(s.select("bouke", "INBOX").unwrap().messages.len(), 1);
}

#[test]
fn mbox_recovers_pending_appends_and_external_mail() {
    let (_d, s) = spool(SpoolKind::Mbox);
    s.append(
        "bouke",
        "INBOX",
        b"S: 1\n\none\n".to_vec(),
        &Flags::new(),
        None,
    )
    .unwrap();
    let path = s.mbox_path("bouke");
    let good_len = std::fs::metadata(&path).unwrap().len();
    // A crashed writer: pending row recorded, half the bytes written.
    let chunk = mbox::chunk(b"\n\n", Some("x@y"), 0, b"S: 2\n\ntwo\n");
    {
        let conn = s.conn().unwrap();
        let mb = dbs::mailbox(&conn, "bouke", "INBOX").unwrap().unwrap();
        dbs::add_pending(
            &conn,
            &dbs::PendingAppend {
                id: 0,
                mailbox_id: mb.id,
                start: good_len,
                offset: good_len + chunk.msg_start,
                length: chunk.msg_len,
                total: chunk.bytes.len() as u64,
                sha256: hex::encode(Sha256::digest(&chunk.bytes)),
                size: 12,
                internal_date: 0,
                flags: String::new(),
                message_id: None,
                delivery_key: Some("k2".into()),
            },
        )
        .unwrap();
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    use std::io::Write;
    f.write_all(&chunk.bytes[..chunk.bytes.len() / 2]).unwrap();
    drop(f);
    let st = s.select("bouke", "INBOX").unwrap();
    assert_eq!(st.messages.len(), 1);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
    // procmail appends a message.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"From ext@host Wed Nov 25 14:46:27 2026\nStatus: RO\nS: 3\n\n>From three\n\n")
        .unwrap();
    drop(f);
    let st = s.select("bouke", "INBOX").unwrap();
    assert_eq!(st.messages.len(), 2);
    assert!(st.messages[1].flags.contains("\\Seen"));
    assert_eq!(
        s.read_message("bouke", "INBOX", st.messages[1].uid)
            .unwrap(),
        b"Status: RO\nS: 3\n\nFrom three\n"
    );
}

#[tokio::test]
async fn watcher_wakes_on_append() {
    let (_d, s) = spool(SpoolKind::Maildir);
    s.prepare_user("bouke").unwrap();
    let mut w = s.watch("bouke").unwrap();
    let s2 = s.clone();
    s.run(move |_| s2.append("bouke", "INBOX", b"S: w\n\n".to_vec(), &Flags::new(), None))
        .await
        .unwrap();
    let c = w.changed().await;
    assert_eq!(c.mailbox.as_deref(), Some("INBOX"));
}

#[test]
fn header_ends_and_header_reads() {
    assert_eq!(header_end_in(b"A: b\r\n\r\nbody", 0), Some(8));
    assert_eq!(header_end_in(b"A: b\n\nbody", 0), Some(6));
    assert_eq!(header_end_in(b"\r\nbody", 0), Some(2));
    assert_eq!(header_end_in(b"A: b\r\nC: d\r\n", 0), None);
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("m");
    // A header longer than one read step, then a large body.
    let mut msg = b"Subject: x\r\n".to_vec();
    for i in 0..1000 {
        msg.extend_from_slice(format!("X-H{i}: value\r\n").as_bytes());
    }
    let head_len = msg.len() + 2;
    msg.extend_from_slice(b"\r\n");
    msg.extend(std::iter::repeat_n(b'a', 100_000));
    std::fs::write(&p, &msg).unwrap();
    assert_eq!(read_header(&p).unwrap(), &msg[..head_len]);
    std::fs::write(&p, b"A: b\r\nno end").unwrap();
    assert_eq!(read_header(&p).unwrap(), b"A: b\r\nno end");
}

#[test]
fn from_line_dates() {
    assert_eq!(
        parse_from_line_date("From a@b Thu Jan  1 00:00:10 1970"),
        Some(10)
    );
    assert_eq!(parse_from_line_date("From a@b junk"), None);
}
