//! Interop: Debian's `sieve-connect` against zolder's ManageSieve server — STARTTLS
//! (our self-signed certificate, not verified), AUTHENTICATE PLAIN, upload, list,
//! activate (delivery's file appears), download, check with an error, deactivate,
//! delete. Prints "skipped: sieve-connect not installed" and returns when the program
//! is missing (unless ZOLDER_INTEROP=1, when it must be there).

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
mod common;
use common::Zolder;

async fn sieve_connect(port: u16, args: &[&str]) -> (bool, String) {
    let mut child = tokio::process::Command::new("sieve-connect")
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(["--user", "bouke", "--passwordfd", "0", "--notlsverify"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"geheim\n").await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("sieve-connect hung")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sieve_connect_manages_scripts() {
    if !Path::new("/usr/bin/sieve-connect").exists() {
        assert!(
            std::env::var_os("ZOLDER_INTEROP").is_none(),
            "ZOLDER_INTEROP is set but sieve-connect is missing"
        );
        println!("skipped: sieve-connect not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = Zolder::new("localhost")
        .top("local_domains = [\"zolder.test\"]")
        .top("postmaster = \"bouke\"")
        .listen("managesieve")
        .user("bouke", "geheim", &["bouke@zolder.test"])
        .start()
        .await;
    let running = &srv.running;
    let port = running.addr("managesieve").port();
    let good = dir.path().join("filters.sieve");
    let script = "require [\"fileinto\"];\nif header :contains \"subject\" \"[club]\" {\n  fileinto \"Club\";\n}\n";
    std::fs::write(&good, script).unwrap();
    let bad = dir.path().join("bad.sieve");
    std::fs::write(&bad, "require [\"fileinto\"];\nfileinto \"X\"\nkeep;\n").unwrap();
    let g = good.to_str().unwrap();

    let (ok, out) = sieve_connect(
        port,
        &["--upload", "--localsieve", g, "--remotesieve", "filters"],
    )
    .await;
    assert!(ok, "upload: {out}");
    let (ok, out) = sieve_connect(port, &["--list"]).await;
    assert!(ok && out.contains("filters"), "list: {out}");
    let (ok, out) = sieve_connect(port, &["--activate", "--remotesieve", "filters"]).await;
    assert!(ok, "activate: {out}");
    let active = running
        .ctx
        .config
        .data_dir
        .join("sieve")
        .join("bouke.sieve");
    assert_eq!(std::fs::read_to_string(&active).unwrap(), script);
    let (_, out) = sieve_connect(port, &["--list"]).await;
    assert!(
        out.contains("filters") && out.to_lowercase().contains("active"),
        "list: {out}"
    );

    let back = dir.path().join("back.sieve");
    let (ok, out) = sieve_connect(
        port,
        &[
            "--download",
            "--remotesieve",
            "filters",
            "--localsieve",
            back.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "download: {out}");
    assert_eq!(std::fs::read_to_string(&back).unwrap(), script);

    let (ok, out) = sieve_connect(
        port,
        &["--checkscript", "--localsieve", bad.to_str().unwrap()],
    )
    .await;
    assert!(
        !ok && out.contains("line"),
        "checkscript of a broken script: {out}"
    );

    let (ok, out) = sieve_connect(port, &["--deactivate"]).await;
    assert!(ok, "deactivate: {out}");
    assert!(!active.exists());
    let (ok, out) = sieve_connect(port, &["--delete", "--remotesieve", "filters"]).await;
    assert!(ok, "delete: {out}");
    let (_, out) = sieve_connect(port, &["--list"]).await;
    assert!(!out.contains("filters"), "list after delete: {out}");
    srv.shutdown().await;
}
