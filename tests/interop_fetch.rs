//! Fetching from a real Dovecot acting as the ISP (`../shared/interop/start-isp.sh`):
//! POP3 and IMAP × keep and delete × plain, STARTTLS and implicit TLS (certificate
//! checks, pins), several folders, a UIDVALIDITY change, `limit` / `fetchlimit` /
//! `delete_after_days`, IDLE, and multidrop. Each test starts its own Dovecot on its
//! own ports; all skip (printing why) without Dovecot or root.
//!
//! Delivery is `common::MaildirDeliver` (durable Maildir writes + idempotency keys), so
//! these tests check the fetcher's side of the contract; the real pipeline is
//! exercised by `tests/crash/fetch-crash.sh` and `benches/fetch-bench.sh`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Isp, MaildirDeliver, config};
use zolder::fetch::{FetchDb, Fetcher, PollOutcome};

struct Rig {
    f: Fetcher,
    d: Arc<MaildirDeliver>,
    _dir: tempfile::TempDir,
}

fn rig(users: &[&str], accounts: &str) -> Rig {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), users, accounts);
    let db = FetchDb::open(&cfg.db_path()).unwrap();
    let d = Arc::new(MaildirDeliver::new(&dir.path().join("mail")));
    let mut f = Fetcher::new(Arc::new(cfg), db, d.clone());
    f.progress = zolder::fetch::progress::Progress::quiet();
    Rig { f, d, _dir: dir }
}

fn account(name: &str, proto: &str, port: u16, user: &str, extra: &str) -> String {
    format!(
        "[[accounts]]\nname = \"{name}\"\nprotocol = \"{proto}\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"{user}\"\npassword = \"secret\"\ndeliver_to = [\"bouke\"]\n{extra}\n"
    )
}

async fn poll(r: &Rig, i: usize) -> PollOutcome {
    let acc = r.f.config.accounts[i].clone();
    r.f.poll(&acc).await
}

fn ok(o: &PollOutcome) {
    assert!(o.error.is_none(), "poll failed: {:?}", o.error);
    assert_eq!(o.deferred, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pop3_and_imap_keep_and_delete_plain() {
    let Some(isp) = Isp::start(None) else { return };
    for (proto, port) in [("pop3", isp.pop3), ("imap", isp.imap)] {
        for keep in [true, false] {
            let user = if keep { "alice" } else { "bob" };
            isp.populate(user, 60, "mixed");
            let r = rig(
                &["bouke"],
                &account("isp", proto, port, user, &format!("keep = {keep}")),
            );
            let o = poll(&r, 0).await;
            ok(&o);
            assert_eq!(o.fetched, 60, "{proto} keep={keep}");
            isp.verify(&r.d.maildir("bouke"), 60, user).unwrap();
            assert_eq!(
                isp.count(user, "INBOX"),
                if keep { 60 } else { 0 },
                "{proto} keep={keep}"
            );
            // A second poll finds nothing new and delivers nothing twice.
            let o = poll(&r, 0).await;
            ok(&o);
            assert_eq!(o.fetched, 0, "{proto} keep={keep} re-poll");
            assert_eq!(r.d.count("bouke"), 60);
            // New mail after the first poll is fetched, once.
            isp.populate_more(user, 5, "small");
            let o = poll(&r, 0).await;
            ok(&o);
            assert_eq!(o.fetched, 5, "{proto} keep={keep} new mail");
            isp.verify(&r.d.maildir("bouke"), 65, user).unwrap();
            // Switching keep off later deletes what was already delivered, fetching nothing.
            if keep {
                let r2 = Rig {
                    f: {
                        let mut cfg = (*r.f.config).clone();
                        cfg.accounts[0].keep = false;
                        let mut f = r.f.clone();
                        f.config = Arc::new(cfg);
                        f
                    },
                    d: r.d.clone(),
                    _dir: tempfile::tempdir().unwrap(),
                };
                let o = poll(&r2, 0).await;
                ok(&o);
                assert_eq!(
                    (o.fetched, o.deleted),
                    (0, 65),
                    "{proto}: delete the kept ones"
                );
                assert_eq!(isp.count(user, "INBOX"), 0);
                assert_eq!(r.d.count("bouke"), 65);
            }
        }
    }
}

/// A test CA and a server certificate for `localhost` signed by it.
fn make_certs() -> (String, String, String, Vec<u8>) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "zolder test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let mut srv = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    srv.distinguished_name.push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().unwrap();
    let cert = srv.signed_by(&key, &issuer).unwrap();
    (
        ca_cert.pem(),
        cert.pem(),
        key.serialize_pem(),
        cert.der().to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_starttls_implicit_pins_and_refusals() {
    let (ca_pem, cert_pem, key_pem, der) = make_certs();
    let Some(isp) = Isp::start(Some((&cert_pem, &key_pem))) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let ca = ca_file.display().to_string();
    isp.populate("alice", 10, "small");
    let tls_acc = |name: &str, proto: &str, port: u16, tls: &str, host: &str, extra: &str| {
        format!(
            "[[accounts]]\nname = \"{name}\"\nprotocol = \"{proto}\"\nhost = \"{host}\"\nport = {port}\ntls = \"{tls}\"\nusername = \"alice\"\npassword = \"secret\"\ndeliver_to = [\"bouke\"]\nkeep = true\n{extra}\n"
        )
    };
    use sha2::Digest;
    let sha = hex::encode(sha2::Sha256::digest(&der));
    let md5 = hex::encode(md5::Md5::digest(&der))
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let ca_line = format!("ca_file = \"{ca}\"");
    let cases: Vec<(String, bool)> = vec![
        (
            tls_acc(
                "p-stls",
                "pop3",
                isp.pop3,
                "starttls",
                "localhost",
                &ca_line,
            ),
            true,
        ),
        (
            tls_acc(
                "p-impl",
                "pop3",
                isp.pop3s,
                "implicit",
                "localhost",
                &ca_line,
            ),
            true,
        ),
        (
            tls_acc(
                "i-stls",
                "imap",
                isp.imap,
                "starttls",
                "localhost",
                &ca_line,
            ),
            true,
        ),
        (
            tls_acc(
                "i-impl",
                "imap",
                isp.imaps,
                "implicit",
                "localhost",
                &ca_line,
            ),
            true,
        ),
        // Unknown CA: refused.
        (
            tls_acc("i-noca", "imap", isp.imaps, "implicit", "localhost", ""),
            false,
        ),
        (
            tls_acc("p-noca", "pop3", isp.pop3, "starttls", "localhost", ""),
            false,
        ),
        // Wrong host name (the certificate names only localhost): refused.
        (
            tls_acc(
                "i-name",
                "imap",
                isp.imaps,
                "implicit",
                "127.0.0.1",
                &ca_line,
            ),
            false,
        ),
        // Pinned: accepted without the CA and despite the name, SHA-256 or MD5.
        (
            tls_acc(
                "i-pin",
                "imap",
                isp.imaps,
                "implicit",
                "127.0.0.1",
                &format!("tls_fingerprint = \"{sha}\""),
            ),
            true,
        ),
        (
            tls_acc(
                "p-pin",
                "pop3",
                isp.pop3s,
                "implicit",
                "127.0.0.1",
                &format!("tls_fingerprint = \"{md5}\""),
            ),
            true,
        ),
        // A wrong pin: refused even with the right CA.
        (
            tls_acc(
                "i-badpin",
                "imap",
                isp.imaps,
                "implicit",
                "localhost",
                &format!("{ca_line}\ntls_fingerprint = \"{}\"", "ab".repeat(32)),
            ),
            false,
        ),
    ];
    for (toml, should_work) in cases {
        let r = rig(&["bouke"], &toml);
        let name = r.f.config.accounts[0].name.clone();
        let o = poll(&r, 0).await;
        if should_work {
            ok(&o);
            assert_eq!(o.fetched, 10, "{name}");
            isp.verify(&r.d.maildir("bouke"), 10, "alice").unwrap();
        } else {
            let e = o
                .error
                .unwrap_or_else(|| panic!("{name}: should have been refused"));
            assert!(
                matches!(e, zolder::fetch::FetchError::Tls(_)),
                "{name}: {e}"
            );
            assert!(!e.is_temporary(), "{name}");
            assert_eq!(r.d.count("bouke"), 0, "{name}");
        }
    }
    // Delete over TLS too.
    let r = rig(
        &["bouke"],
        &tls_acc(
            "i-del",
            "imap",
            isp.imaps,
            "implicit",
            "localhost",
            &format!("{ca_line}\nkeep = false"),
        )
        .replace("keep = true\n", ""),
    );
    let o = poll(&r, 0).await;
    ok(&o);
    assert_eq!((o.fetched, o.deleted), (10, 10));
    assert_eq!(isp.count("alice", "INBOX"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_folders_and_uidvalidity_change() {
    let Some(isp) = Isp::start(None) else { return };
    isp.populate("alice", 20, "small");
    isp.doveadm(&["mailbox", "create", "-u", "alice", "Lists"], None);
    for i in 0..4 {
        let m = format!(
            "Message-ID: <lists.{i}@example.org>\r\nFrom: list@example.org\r\nSubject: list {i}\r\n\r\nbody {i}\r\n"
        );
        isp.doveadm(&["save", "-u", "alice", "-m", "Lists"], Some(m.as_bytes()));
    }
    let r = rig(
        &["bouke"],
        &account(
            "isp",
            "imap",
            isp.imap,
            "alice",
            "keep = true\nfolders = [\"INBOX\", \"Lists\"]",
        ),
    );
    let o = poll(&r, 0).await;
    ok(&o);
    assert_eq!(o.fetched, 24);
    // UIDVALIDITY of INBOX changes; two new messages arrive.
    isp.doveadm(
        &[
            "mailbox",
            "update",
            "-u",
            "alice",
            "--uid-validity",
            "12345",
            "INBOX",
        ],
        None,
    );
    isp.populate_more("alice", 2, "small");
    let o = poll(&r, 0).await;
    ok(&o);
    assert_eq!(o.fetched, 22, "every INBOX message is seen again");
    assert_eq!(
        r.d.count("bouke"),
        26,
        "but only the two new ones are delivered"
    );
    // Then the folder is in its new steady state.
    let o = poll(&r, 0).await;
    ok(&o);
    assert_eq!(o.fetched, 0);
    assert_eq!(r.d.count("bouke"), 26);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_fetchlimit_delete_after_days() {
    let Some(isp) = Isp::start(None) else { return };
    for (proto, port) in [("pop3", isp.pop3), ("imap", isp.imap)] {
        // limit: messages over 30 000 bytes stay at the ISP, unfetched.
        isp.populate("alice", 40, "mixed");
        let r = rig(
            &["bouke"],
            &account("isp", proto, port, "alice", "keep = false\nlimit = 30000"),
        );
        let o = poll(&r, 0).await;
        ok(&o);
        assert!(o.skipped > 0 && o.fetched > 0, "{proto}: {o:?}");
        assert_eq!(o.fetched + o.skipped, 40);
        assert_eq!(isp.count("alice", "INBOX") as u64, o.skipped, "{proto}");
        // fetchlimit: at most 7 per poll.
        isp.populate("bob", 20, "small");
        let r = rig(
            &["bouke"],
            &account("isp", proto, port, "bob", "keep = true\nfetchlimit = 7"),
        );
        for want in [7, 7, 6, 0] {
            let o = poll(&r, 0).await;
            ok(&o);
            assert_eq!(o.fetched, want, "{proto} fetchlimit");
        }
        isp.verify(&r.d.maildir("bouke"), 20, "bob").unwrap();
        // delete_after_days: kept messages older than the limit are deleted.
        isp.populate("carol", 10, "small");
        let r = rig(
            &["bouke"],
            &account(
                "isp",
                proto,
                port,
                "carol",
                "keep = true\ndelete_after_days = 3",
            ),
        );
        let o = poll(&r, 0).await;
        ok(&o);
        assert_eq!((o.fetched, o.deleted), (10, 0));
        // Age half of them by four days.
        let db = zolder::db::open(&r.f.config.db_path()).unwrap();
        let uids: Vec<String> = {
            let mut st = db.prepare("SELECT uid FROM fetch_seen WHERE account = 'isp' AND (uid GLOB '[0-9]*') ORDER BY uid LIMIT 5").unwrap();
            st.query_map([], |r| r.get(0))
                .unwrap()
                .map(|x| x.unwrap())
                .collect()
        };
        assert_eq!(uids.len(), 5);
        for u in &uids {
            db.execute("UPDATE fetch_seen SET seen_at = seen_at - 4 * 86400 WHERE account = 'isp' AND uid = ?1", [u]).unwrap();
        }
        let o = poll(&r, 0).await;
        ok(&o);
        assert_eq!((o.fetched, o.deleted), (0, 5), "{proto} delete_after_days");
        assert_eq!(isp.count("carol", "INBOX"), 5);
        assert_eq!(r.d.count("bouke"), 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_fetches_new_mail_at_once() {
    let Some(isp) = Isp::start(None) else { return };
    isp.populate("alice", 3, "small");
    let r = rig(
        &["bouke"],
        &account("isp", "imap", isp.imap, "alice", "keep = true\nidle = true"),
    );
    let acc = r.f.config.accounts[0].clone();
    let task = tokio::spawn(zolder::fetch::imap::idle_loop(
        r.f.clone(),
        acc,
        "INBOX".into(),
    ));
    let wait_for = |n: usize| {
        let d = r.d.clone();
        async move {
            let t = Instant::now();
            while d.count("bouke") < n {
                assert!(
                    t.elapsed() < Duration::from_secs(30),
                    "IDLE did not deliver {n} within 30 s"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            t.elapsed()
        }
    };
    wait_for(3).await;
    // Let the connection settle into IDLE, then a message arrives at the ISP.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    isp.doveadm(
        &["save", "-u", "alice", "-m", "INBOX"],
        Some(b"Message-ID: <idle.1@example.org>\r\nSubject: push\r\n\r\nnow\r\n"),
    );
    wait_for(4).await;
    println!("IDLE: appended message delivered after {:?}", t.elapsed());
    r.f.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.d.count("bouke"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multidrop_splits_one_mailbox_between_three_users() {
    let Some(isp) = Isp::start(None) else { return };
    let msgs: &[(&str, &str)] = &[
        ("X-Original-To: anna@family.nl\r\n", "1"),
        ("X-Original-To: pa@family.nl\r\n", "2"),
        ("X-Original-To: bouke@family.nl\r\n", "3"),
        // One copy for two of them (one envelope header each), a duplicate header ignored.
        (
            "X-Original-To: anna@family.nl\r\nX-Original-To: bouke@family.nl\r\nX-Original-To: ANNA@family.nl\r\n",
            "4",
        ),
        // Delivered-To only.
        ("Delivered-To: bouke@family.nl\r\n", "5"),
        // Nobody we know: the postmaster (sjoerd).
        ("X-Original-To: stranger@family.nl\r\n", "6"),
        // Not our domain at all: never relayed, the postmaster gets it.
        ("X-Original-To: someone@elsewhere.org\r\n", "7"),
    ];
    for (h, i) in msgs {
        let m = format!(
            "Return-Path: <sender@example.org>\r\n{h}Message-ID: <md.{i}@example.org>\r\nSubject: {i}\r\n\r\nbody\r\n"
        );
        isp.doveadm(&["save", "-u", "dave", "-m", "INBOX"], Some(m.as_bytes()));
    }
    let acc = format!(
        "[[accounts]]\nname = \"family\"\nprotocol = \"pop3\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nusername = \"dave\"\npassword = \"secret\"\n[accounts.multidrop]\nlocal_domains = [\"family.nl\"]\nmap = {{ pa = \"sjoerd\" }}\n",
        isp.pop3
    );
    let r = rig(&["sjoerd", "anna", "bouke"], &acc);
    let o = poll(&r, 0).await;
    ok(&o);
    assert_eq!(o.fetched, 7);
    assert_eq!(r.d.count("anna"), 2);
    assert_eq!(r.d.count("bouke"), 3);
    assert_eq!(r.d.count("sjoerd"), 3);
    assert_eq!(isp.count("dave", "INBOX"), 0);
    let subjects = |u: &str| -> Vec<String> {
        let dir = r.d.maildir(u).join("new");
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let t = std::fs::read_to_string(e.unwrap().path()).unwrap();
                t.lines()
                    .find_map(|l| l.strip_prefix("Subject: ").map(String::from))
                    .unwrap()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(subjects("anna"), vec!["1", "4"]);
    assert_eq!(subjects("bouke"), vec!["3", "4", "5"]);
    assert_eq!(subjects("sjoerd"), vec!["2", "6", "7"]);
}

/// A `keep` IMAP account whose message was over `limit` fetches it once the limit is
/// raised (last UID stays below what was left behind), as POP3 does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_message_over_limit_is_fetched_after_raising_it() {
    let Some(isp) = Isp::start(None) else { return };
    isp.populate("alice", 40, "mixed");
    let r = rig(
        &["bouke"],
        &account(
            "isp",
            "imap",
            isp.imap,
            "alice",
            "keep = true\nlimit = 30000",
        ),
    );
    let o = poll(&r, 0).await;
    ok(&o);
    assert!(o.skipped > 0 && o.fetched > 0, "{o:?}");
    let first = o.fetched;
    // Nothing changes at the ISP: the same ones stay behind, nothing comes twice.
    let o = poll(&r, 0).await;
    ok(&o);
    assert_eq!(o.fetched, 0, "{o:?}");
    // Limit raised: the rest comes, exactly once.
    let mut cfg = (*r.f.config).clone();
    cfg.accounts[0].limit = None;
    let db = FetchDb::open(&cfg.db_path()).unwrap();
    let mut f = Fetcher::new(Arc::new(cfg), db, r.d.clone());
    f.progress = zolder::fetch::progress::Progress::quiet();
    let acc = f.config.accounts[0].clone();
    let o = f.poll(&acc).await;
    ok(&o);
    assert_eq!(o.fetched + first, 40, "{o:?}");
    assert_eq!(f.poll(&acc).await.fetched, 0);
    isp.verify(&r.d.maildir("bouke"), 40, "alice").unwrap();
}

/// A configured folder the ISP does not have is skipped with a warning in status; the
/// folders after it are still fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_missing_folder_is_skipped_and_the_rest_fetched() {
    let Some(isp) = Isp::start(None) else { return };
    isp.populate("alice", 5, "small");
    let r = rig(
        &["bouke"],
        &account(
            "isp",
            "imap",
            isp.imap,
            "alice",
            "keep = true\nfolders = [\"Gone\", \"INBOX\"]",
        ),
    );
    let o = poll(&r, 0).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(o.fetched, 5, "{o:?}");
    let db = zolder::db::open(&r.f.config.db_path()).unwrap();
    let st = zolder::db::fetch::statuses(&db).unwrap();
    let e = st[0].last_error.clone().unwrap_or_default();
    assert!(e.contains("Gone") && e.contains("skipped"), "{st:?}");
    assert_eq!(st[0].result.as_deref(), Some("ok"));
}
