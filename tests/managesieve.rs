//! ManageSieve (RFC 5804) on `[listen] managesieve` against the real daemon, with a
//! raw client: capabilities, AUTHENTICATE PLAIN (initial response and challenge),
//! upload with a compile error naming the line, list, activate (delivery's file),
//! get, rename, delete, quotas, and the literal bound.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

mod common;
use common::Zolder;

struct Client {
    rd: BufReader<TcpStream>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> (Client, String) {
        let s = TcpStream::connect(addr).await.unwrap();
        let mut c = Client {
            rd: BufReader::new(s),
        };
        let g = c.response().await;
        (c, g)
    }

    /// Lines up to and including the OK/NO/BYE line (literals read whole).
    async fn response(&mut self) -> String {
        let mut out = String::new();
        loop {
            let mut line = String::new();
            if self.rd.read_line(&mut line).await.unwrap() == 0 {
                return out;
            }
            out.push_str(&line);
            if let Some(n) = line
                .trim_end()
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
            {
                let mut lit = vec![0u8; n.parse().unwrap()];
                self.rd.read_exact(&mut lit).await.unwrap();
                out.push_str(&String::from_utf8_lossy(&lit));
                continue;
            }
            if line.starts_with("OK") || line.starts_with("NO") || line.starts_with("BYE") {
                return out;
            }
        }
    }

    async fn cmd(&mut self, c: &[u8]) -> String {
        self.rd.get_mut().write_all(c).await.unwrap();
        self.response().await
    }
}

fn plain(user: &str, pass: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"))
}

#[tokio::test]
async fn scripts_over_managesieve() {
    let srv = Zolder::new("zolder.test")
        .top("local_domains = [\"zolder.test\"]")
        .top("postmaster = \"bouke\"")
        .top("managesieve.max_script_size = 2000")
        .top("managesieve.max_scripts = 2")
        .listen("managesieve")
        .user("bouke", "geheim", &["bouke@zolder.test"])
        .start()
        .await;
    let running = &srv.running;
    let addr = running.addr("managesieve");
    let (mut c, greeting) = Client::connect(addr).await;
    assert!(
        greeting.contains("\"IMPLEMENTATION\" \"zolder"),
        "{greeting}"
    );
    assert!(
        greeting.contains("\"SASL\" \"PLAIN\""),
        "loopback may log in: {greeting}"
    );
    assert!(greeting.contains("\"STARTTLS\""), "{greeting}");
    assert!(
        greeting.contains("fileinto") && greeting.contains("vacation"),
        "{greeting}"
    );
    assert!(
        greeting.contains("\"VERSION\" \"1.0\"")
            && greeting.ends_with("OK \"zolder ManageSieve ready\"\r\n")
    );

    // Nothing before login; a wrong password is refused (after the delay).
    assert!(c.cmd(b"LISTSCRIPTS\r\n").await.starts_with("NO"));
    let r = c
        .cmd(format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", plain("bouke", "fout")).as_bytes())
        .await;
    assert!(r.starts_with("NO"), "{r}");
    // The challenge form: "" then the response as a literal.
    c.rd.get_mut()
        .write_all(b"AUTHENTICATE \"PLAIN\"\r\n")
        .await
        .unwrap();
    let mut ch = String::new();
    c.rd.read_line(&mut ch).await.unwrap();
    assert_eq!(ch, "\"\"\r\n");
    let p = plain("bouke", "geheim");
    let r = c
        .cmd(format!("{{{}+}}\r\n{p}\r\n", p.len()).as_bytes())
        .await;
    assert!(r.starts_with("OK"), "{r}");

    // A script that does not compile: NO with the line.
    let bad = "require \"fileinto\";\nif header :contains \"subject\" \"x\" {\n  fileinto \"X\";\n";
    let r = c
        .cmd(format!("PUTSCRIPT \"kapot\" {{{}+}}\r\n{bad}\r\n", bad.len()).as_bytes())
        .await;
    assert!(r.starts_with("NO") && r.contains("line "), "{r}");
    let r = c
        .cmd(format!("CHECKSCRIPT {{{}+}}\r\n{bad}\r\n", bad.len()).as_bytes())
        .await;
    assert!(r.starts_with("NO") && r.contains("line "), "{r}");
    let good = "require \"fileinto\";\r\nif header :contains \"subject\" \"[club]\" {\r\n  fileinto \"Club\";\r\n}\r\n";
    assert!(
        c.cmd(format!("CHECKSCRIPT {{{}+}}\r\n{good}\r\n", good.len()).as_bytes())
            .await
            .starts_with("OK")
    );
    let r = c
        .cmd(format!("PUTSCRIPT \"club\" {{{}+}}\r\n{good}\r\n", good.len()).as_bytes())
        .await;
    assert!(r.starts_with("OK"), "{r}");
    assert_eq!(c.cmd(b"LISTSCRIPTS\r\n").await, "\"club\"\r\nOK\r\n");

    // Activating writes the file delivery reads.
    assert!(c.cmd(b"SETACTIVE \"club\"\r\n").await.starts_with("OK"));
    let active = running
        .ctx
        .config
        .data_dir
        .join("sieve")
        .join("bouke.sieve");
    assert_eq!(std::fs::read_to_string(&active).unwrap(), good);
    assert_eq!(c.cmd(b"LISTSCRIPTS\r\n").await, "\"club\" ACTIVE\r\nOK\r\n");
    let r = c.cmd(b"GETSCRIPT \"club\"\r\n").await;
    assert_eq!(r, format!("{{{}}}\r\n{good}\r\nOK\r\n", good.len()));
    assert!(
        c.cmd(b"GETSCRIPT \"nope\"\r\n")
            .await
            .starts_with("NO (NONEXISTENT)")
    );
    assert!(
        c.cmd(b"DELETESCRIPT \"club\"\r\n")
            .await
            .starts_with("NO (ACTIVE)")
    );

    // Quotas: size and count.
    assert!(c.cmd(b"HAVESPACE \"x\" 100\r\n").await.starts_with("OK"));
    assert!(
        c.cmd(b"HAVESPACE \"x\" 5000\r\n")
            .await
            .starts_with("NO (QUOTA/MAXSIZE)")
    );
    assert!(
        c.cmd(b"PUTSCRIPT \"two\" {5+}\r\nkeep;\r\n")
            .await
            .starts_with("OK")
    );
    assert!(
        c.cmd(b"PUTSCRIPT \"three\" {5+}\r\nkeep;\r\n")
            .await
            .starts_with("NO (QUOTA/MAXSCRIPTS)")
    );
    assert!(
        c.cmd(b"RENAMESCRIPT \"two\" \"club\"\r\n")
            .await
            .starts_with("NO (ALREADYEXISTS)")
    );
    assert!(
        c.cmd(b"RENAMESCRIPT \"club\" \"filters\"\r\n")
            .await
            .starts_with("OK")
    );
    assert_eq!(
        c.cmd(b"LISTSCRIPTS\r\n").await,
        "\"filters\" ACTIVE\r\n\"two\"\r\nOK\r\n"
    );
    assert!(c.cmd(b"SETACTIVE \"\"\r\n").await.starts_with("OK"));
    assert!(!active.exists());
    assert!(
        c.cmd(b"DELETESCRIPT \"filters\"\r\n")
            .await
            .starts_with("OK")
    );
    assert!(c.cmd(b"BOGUS\r\n").await.starts_with("NO"));
    assert!(c.cmd(b"NOOP\r\n").await.starts_with("OK"));
    // A literal past the bound ends the connection.
    let r = c.cmd(b"PUTSCRIPT \"big\" {99999999+}\r\n").await;
    assert!(r.starts_with("BYE"), "{r}");
    let (mut c2, _) = Client::connect(addr).await;
    assert!(c2.cmd(b"LOGOUT\r\n").await.starts_with("OK"));
    srv.shutdown().await;
}
