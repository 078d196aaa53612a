//! DKIM signing (RFC 6376; Ed25519 per RFC 8463) of mail leaving for the Internet from
//! the own domains: `[[dkim]] domain, selector, key_file`. The relay signs after
//! masquerading and before the smarthost or the MX, with every key whose `domain` is
//! the From: address's domain (RSA and Ed25519 side by side when both are given).
//! Key generation for `zolder dkim keygen` lives here too.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{DkimSigner, Done};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};
use tracing::warn;

use crate::config::Config;

/// The header fields signed (those present in the message).
const SIGNED: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "In-Reply-To",
    "References",
];

enum KeyKind {
    Rsa(RsaKey<Sha256>),
    Ed25519(Ed25519Key),
}

enum Built {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

struct Key {
    domain: String,
    selector: String,
    signer: Built,
}

/// The signing keys of `[[dkim]]`.
pub struct Signer {
    keys: Vec<Key>,
}

/// A PEM block: (label, DER).
fn pem(text: &str) -> Option<(String, Vec<u8>)> {
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + 11..];
    let end_label = rest.find("-----")?;
    let label = rest[..end_label].to_string();
    let body_start = end_label + 5;
    let end = rest.find("-----END ")?;
    let b64: String = rest[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    B64.decode(b64).ok().map(|d| (label, d))
}

fn load_key(path: &Path) -> Result<KeyKind, String> {
    crate::config::check_secret_file(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let (label, der) =
        pem(&text).ok_or_else(|| format!("{}: not a PEM private key", path.display()))?;
    let bad = |e: mail_auth::Error| format!("{}: {e}", path.display());
    match label.as_str() {
        "RSA PRIVATE KEY" => {
            RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)))
                .map(KeyKind::Rsa)
                .map_err(bad)
        }
        "PRIVATE KEY" => match Ed25519Key::from_pkcs8_der(&der) {
            Ok(k) => Ok(KeyKind::Ed25519(k)),
            Err(_) => {
                RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)))
                    .map(KeyKind::Rsa)
                    .map_err(bad)
            }
        },
        other => Err(format!(
            "{}: PEM block `{other}` is not an RSA or Ed25519 private key",
            path.display()
        )),
    }
}

/// The domain of the first From: address, lower case.
fn from_domain(msg: &[u8]) -> Option<String> {
    let m = mail_parser::MessageParser::new().parse_headers(msg)?;
    let addr = m.from()?.first()?.address()?.to_string();
    addr.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase())
}

impl Signer {
    /// From `[[dkim]]`; `None` when no key is configured. Each key file is read here
    /// (permissions checked), so a bad one stops the start with its name.
    pub fn from_config(cfg: &Config) -> Result<Option<Signer>, String> {
        if cfg.dkim.is_empty() {
            return Ok(None);
        }
        let mut keys = Vec::new();
        for (i, k) in cfg.dkim.iter().enumerate() {
            let kind = load_key(&k.key_file).map_err(|e| format!("dkim[{i}].key_file: {e}"))?;
            let domain = k.domain.trim().to_ascii_lowercase();
            let selector = k.selector.trim().to_string();
            let signer = match kind {
                KeyKind::Rsa(key) => Built::Rsa(
                    DkimSigner::from_key(key)
                        .domain(&domain)
                        .selector(&selector)
                        .headers(SIGNED.iter().copied()),
                ),
                KeyKind::Ed25519(key) => Built::Ed25519(
                    DkimSigner::from_key(key)
                        .domain(&domain)
                        .selector(&selector)
                        .headers(SIGNED.iter().copied()),
                ),
            };
            keys.push(Key {
                domain,
                selector,
                signer,
            });
        }
        Ok(Some(Signer { keys }))
    }

    /// `msg` with a DKIM-Signature per matching key in front; `None` when no key
    /// belongs to its From: domain.
    pub fn sign(&self, msg: &[u8]) -> Option<Vec<u8>> {
        let domain = from_domain(msg)?;
        let mut headers = String::new();
        for k in self.keys.iter().filter(|k| k.domain == domain) {
            let r = match &k.signer {
                Built::Rsa(s) => s.sign(msg),
                Built::Ed25519(s) => s.sign(msg),
            };
            match r {
                Ok(sig) => headers.push_str(&sig.to_header()),
                Err(e) => {
                    warn!(domain = %k.domain, selector = %k.selector, "DKIM signing failed: {e}")
                }
            }
        }
        if headers.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(headers.len() + msg.len());
        out.extend_from_slice(headers.as_bytes());
        out.extend_from_slice(msg);
        Some(out)
    }
}

/// The TXT record (`v=DKIM1; k=…; p=…`) that publishes the public half of the
/// private key in `path`.
pub fn txt_record(path: &Path) -> Result<String, String> {
    Ok(match load_key(path)? {
        KeyKind::Rsa(k) => format!(
            "v=DKIM1; k=rsa; p={}",
            B64.encode(rsa_spki(&k.public_key()))
        ),
        KeyKind::Ed25519(k) => format!("v=DKIM1; k=ed25519; p={}", B64.encode(k.public_key())),
    })
}

/// Key algorithms `zolder dkim keygen` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Algorithm {
    Rsa,
    Ed25519,
}

fn der_len(n: usize, out: &mut Vec<u8>) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let b = n.to_be_bytes();
        let skip = b.iter().take_while(|x| **x == 0).count();
        out.push(0x80 | (b.len() - skip) as u8);
        out.extend_from_slice(&b[skip..]);
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    der_len(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

/// A PKCS#1 RSAPublicKey wrapped as the SubjectPublicKeyInfo DKIM's `p=` carries.
pub fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption, NULL }
    let alg = der(
        0x30,
        &[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
        ],
    );
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1);
    let mut seq = alg;
    seq.extend(der(0x03, &bits));
    der(0x30, &seq)
}

fn pem_text(label: &str, der: &[u8]) -> String {
    let b = B64.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).expect("base64"));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

/// A new key: (PEM private key, TXT record value `v=DKIM1; k=…; p=…`).
pub fn generate(alg: Algorithm) -> Result<(String, String), String> {
    use mail_auth::dkim::generate::DkimKeyPair;
    match alg {
        Algorithm::Rsa => {
            let kp = DkimKeyPair::generate_rsa(2048).map_err(|e| e.to_string())?;
            Ok((
                pem_text("RSA PRIVATE KEY", kp.private_key()),
                format!(
                    "v=DKIM1; k=rsa; p={}",
                    B64.encode(rsa_spki(kp.public_key()))
                ),
            ))
        }
        Algorithm::Ed25519 => {
            let kp = DkimKeyPair::generate_ed25519().map_err(|e| e.to_string())?;
            Ok((
                pem_text("PRIVATE KEY", kp.private_key()),
                format!("v=DKIM1; k=ed25519; p={}", B64.encode(kp.public_key())),
            ))
        }
    }
}

/// Writes `pem` to `path` with mode 0600 (never over an existing file).
pub fn write_key(path: &Path, pem: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                format!(
                    "{}: already exists (remove it, or give --out FILE)",
                    path.display()
                )
            } else {
                format!("{}: {e}", path.display())
            }
        })?;
    f.write_all(pem.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Where `zolder dkim keygen` puts a key by default.
pub fn default_key_path(cfg: &Config, domain: &str, selector: &str) -> PathBuf {
    cfg.data_dir
        .join("dkim")
        .join(format!("{}.{selector}.key", domain.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg_with(dir: &Path, keys: &[(&str, &str, &Path)]) -> Config {
        let mut t = String::from("hostname = \"mx.zolder.test\"\n");
        for (d, s, p) in keys {
            t.push_str(&format!(
                "[[dkim]]\ndomain = \"{d}\"\nselector = \"{s}\"\nkey_file = \"{}\"\n",
                p.display()
            ));
        }
        Config::from_str_at(&t, &dir.join("zolder.toml"), false).unwrap()
    }

    #[test]
    fn keys_round_trip_and_sign_per_from_domain() {
        let dir = tempfile::tempdir().unwrap();
        let mut txts = vec![];
        let mut keys = vec![];
        for (alg, sel) in [(Algorithm::Rsa, "r1"), (Algorithm::Ed25519, "e1")] {
            let (pem, txt) = generate(alg).unwrap();
            let p = dir.path().join(format!("own.example.{sel}.key"));
            write_key(&p, &pem).unwrap();
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert!(write_key(&p, &pem).unwrap_err().contains("already exists"));
            txts.push((sel, txt));
            keys.push(p);
        }
        assert!(
            txts[0].1.starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"),
            "{}",
            txts[0].1
        );
        assert!(txts[1].1.starts_with("v=DKIM1; k=ed25519; p="));
        // The record can be derived again from the key file (`zolder dns`).
        assert_eq!(txt_record(&keys[0]).unwrap(), txts[0].1);
        assert_eq!(txt_record(&keys[1]).unwrap(), txts[1].1);
        let cfg = cfg_with(
            dir.path(),
            &[
                ("own.example", "r1", &keys[0]),
                ("own.example", "e1", &keys[1]),
            ],
        );
        let s = Signer::from_config(&cfg).unwrap().unwrap();
        let msg =
            b"From: Bouke <bouke@own.example>\r\nTo: x@else.example\r\nSubject: hi\r\n\r\nbody\r\n";
        let signed = s.sign(msg).unwrap();
        let text = String::from_utf8_lossy(&signed);
        assert_eq!(text.matches("DKIM-Signature:").count(), 2, "{text}");
        assert!(text.contains("a=rsa-sha256") && text.contains("a=ed25519-sha256"));
        assert!(text.ends_with("\r\n\r\nbody\r\n"));
        // Another From: domain is not signed.
        assert!(s.sign(b"From: a@other.example\r\n\r\nx\r\n").is_none());

        // (Verification against the published TXT: tests/outgoing_dkim.rs and the
        // interop suite with python3-dkim.)
    }

    #[test]
    fn bad_key_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.key");
        write_key(&p, "not a key").unwrap();
        let cfg = cfg_with(dir.path(), &[("own.example", "s", &p)]);
        let e = Signer::from_config(&cfg).err().unwrap();
        assert!(e.contains("dkim[0].key_file") && e.contains("k.key"), "{e}");
        let open = dir.path().join("open.key");
        std::fs::write(&open, generate(Algorithm::Ed25519).unwrap().0).unwrap();
        let cfg = cfg_with(dir.path(), &[("own.example", "s", &open)]);
        assert!(
            Signer::from_config(&cfg).is_err(),
            "world-readable key accepted"
        );
    }
}
