//! A tiny authoritative DNS server on loopback UDP for the own-domain tests: A, AAAA,
//! TXT, MX and PTR records from a table that a test fills (and may change while it
//! runs), NXDOMAIN for unknown names, and "silent" suffixes that never answer (a
//! DNSBL that times out). Uses hickory's wire format, nothing else.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, MX, PTR, TXT};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};

type Table = HashMap<(String, RecordType), Vec<RData>>;

/// The server; dropped = stopped.
pub struct TestDns {
    pub addr: SocketAddr,
    table: Arc<Mutex<Table>>,
    silent: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn fqdn(name: &str) -> Name {
    Name::from_ascii(format!("{}.", key(name))).unwrap()
}

impl TestDns {
    pub async fn start() -> TestDns {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let table: Arc<Mutex<Table>> = Arc::default();
        let silent: Arc<Mutex<Vec<String>>> = Arc::default();
        let (t, s) = (table.clone(), silent.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if let Some(out) = answer(&q, &t, &s) {
                    let _ = sock.send_to(&out, from).await;
                }
            }
        });
        TestDns {
            addr,
            table,
            silent,
            task,
        }
    }

    /// The `[dns]` table pointing at this server.
    pub fn config(&self) -> String {
        format!("[dns]\nservers = [\"{}\"]\ntimeout = 2\n", self.addr)
    }

    fn add(&self, name: &str, t: RecordType, d: RData) {
        self.table
            .lock()
            .unwrap()
            .entry((key(name), t))
            .or_default()
            .push(d);
    }

    pub fn clear(&self, name: &str, t: RecordType) {
        self.table.lock().unwrap().remove(&(key(name), t));
    }

    pub fn a(&self, name: &str, ip: &str) {
        match ip.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => self.add(name, RecordType::A, RData::A(A(v4))),
            IpAddr::V6(v6) => self.add(name, RecordType::AAAA, RData::AAAA(AAAA(v6))),
        }
    }

    /// A TXT record; long strings are split into 255-byte parts (DKIM keys).
    pub fn txt(&self, name: &str, text: &str) {
        let parts: Vec<String> = text
            .as_bytes()
            .chunks(255)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        self.add(name, RecordType::TXT, RData::TXT(TXT::new(parts)));
    }

    pub fn mx(&self, name: &str, pref: u16, host: &str) {
        self.add(name, RecordType::MX, RData::MX(MX::new(pref, fqdn(host))));
    }

    /// PTR for `ip` (in-addr.arpa / ip6.arpa) → `host`.
    pub fn ptr(&self, ip: &str, host: &str) {
        let ip: IpAddr = ip.parse().unwrap();
        let name = zolder::net::dns::reverse_name(
            ip,
            if ip.is_ipv4() {
                "in-addr.arpa"
            } else {
                "ip6.arpa"
            },
        );
        self.add(&name, RecordType::PTR, RData::PTR(PTR(fqdn(host))));
    }

    /// `ip` listed on the DNSBL `zone` with this TXT reason.
    pub fn list(&self, zone: &str, ip: &str, reason: &str) {
        let name = zolder::net::dns::reverse_name(ip.parse().unwrap(), zone);
        self.a(&name, "127.0.0.2");
        self.txt(&name, reason);
    }

    /// Names ending in `suffix` never get an answer.
    pub fn silence(&self, suffix: &str) {
        self.silent.lock().unwrap().push(key(suffix));
    }
}

fn answer(q: &Message, table: &Mutex<Table>, silent: &Mutex<Vec<String>>) -> Option<Vec<u8>> {
    let query = q.queries.first()?;
    let name = key(&query.name().to_ascii());
    if silent
        .lock()
        .unwrap()
        .iter()
        .any(|s| name == *s || name.ends_with(&format!(".{s}")))
    {
        return None;
    }
    let mut r = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
    r.metadata.authoritative = true;
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.add_query(query.clone());
    let t = table.lock().unwrap();
    match t.get(&(name.clone(), query.query_type())) {
        Some(rs) => {
            for d in rs {
                r.add_answer(Record::from_rdata(query.name().clone(), 60, d.clone()));
            }
        }
        None => {
            if !t.keys().any(|(n, _)| *n == name) {
                r.metadata.response_code = ResponseCode::NXDomain;
            }
        }
    }
    r.to_vec().ok()
}
