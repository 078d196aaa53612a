//! The status page on `[listen] status`, through a raw HTTP client against the real
//! daemon: the HTML page, the JSON report, 404/405 answers and the request bound.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use zolder::config::Config;
use zolder::daemon;
use zolder::message::{Deliver, Envelope, Incoming, RawMessage, Source};

async fn get(addr: std::net::SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn page_json_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zolder.toml");
    std::fs::write(
        &path,
        "hostname = \"zolder.test\"\ndata_dir = \"data\"\nlocal_domains = [\"zolder.test\"]\npostmaster = \"bouke\"\n\
         [listen]\nstatus = \"127.0.0.1:0\"\n[[users]]\nname = \"bouke\"\naddresses = [\"bouke@zolder.test\"]\n",
    )
    .unwrap();
    let running = daemon::start(Config::load(&path).unwrap(), path)
        .await
        .unwrap();
    let msg = Incoming {
        envelope: Envelope::new(
            Some("<script>@example.org".into()),
            vec!["bouke@zolder.test".into()],
            Source::Local { user: "t".into() },
        ),
        message: RawMessage::new(b"Subject: hi\n\nhello\n".to_vec()),
    };
    assert!(
        running
            .ctx
            .local_delivery
            .deliver(msg)
            .await
            .all_delivered()
    );
    let addr = running.addr("status");

    let page = get(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(page.contains("zolder on zolder.test"), "{page}");
    assert!(
        page.contains("bouke/INBOX: 1 message(s), 1 unseen"),
        "{page}"
    );

    let json = get(addr, b"GET /status.json HTTP/1.0\r\n\r\n").await;
    let body = json.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["hostname"], "zolder.test");
    let inbox = v["mailboxes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mailbox"] == "INBOX")
        .unwrap();
    assert_eq!(inbox["messages"], 1);
    assert_eq!(v["queue"]["messages"], 0);

    assert!(
        get(addr, b"GET /nope HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 404")
    );
    assert!(
        get(addr, b"POST / HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 405")
    );
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    assert!(get(addr, huge.as_bytes()).await.starts_with("HTTP/1.1 400"));
    assert_eq!(
        get(addr, b"GET /health HTTP/1.1\r\n\r\n")
            .await
            .split("\r\n\r\n")
            .nth(1),
        Some("ok\n")
    );
    running.shutdown().await;
}

#[test]
fn escapes_html() {
    assert_eq!(
        zolder::status::http::escape("<a href=\"x\">&'"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
    );
}
