//! The LAN certificate: from `[tls] cert/key`, or self-signed on first start into
//! `data_dir/tls/` (rcgen), with its SHA-256 fingerprint logged so a family member
//! can compare it once when their mail client asks.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};
use tracing::info;

use crate::config::Config;

/// Builds the TLS acceptor for the LAN servers.
pub fn acceptor(cfg: &Config) -> Result<async_native_tls::TlsAcceptor, String> {
    let (cert_path, key_path) = match (&cfg.tls.cert, &cfg.tls.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let dir = cfg.data_dir.join("tls");
            let c = dir.join("cert.pem");
            let k = dir.join("key.pem");
            if !c.exists() || !k.exists() {
                generate_self_signed(&dir, &cfg.hostname)?;
            }
            (c, k)
        }
    };
    let cert = std::fs::read(&cert_path).map_err(|e| format!("{}: {e}", cert_path.display()))?;
    crate::config::check_secret_file(&key_path)?;
    let key = std::fs::read(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
    info!(cert = %cert_path.display(), sha256 = %fingerprint_pem(&cert), "TLS certificate");
    let id = native_tls::Identity::from_pkcs8(&cert, &key)
        .map_err(|e| format!("{} / {}: {e}", cert_path.display(), key_path.display()))?;
    let acc = native_tls::TlsAcceptor::builder(id)
        .min_protocol_version(Some(native_tls::Protocol::Tlsv12))
        .build()
        .map_err(|e| format!("TLS setup: {e}"))?;
    Ok(async_native_tls::TlsAcceptor::from(acc))
}

/// Writes `cert.pem` and `key.pem` (mode 600) for `hostname` into `dir`.
pub fn generate_self_signed(dir: &Path, hostname: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let names = vec![
        hostname.to_string(),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| format!("certificate: {e}"))?;
    let write = |name: &str, data: &[u8], mode: u32| -> Result<(), String> {
        let p = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&p)
            .map_err(|e| format!("{}: {e}", p.display()))?;
        f.write_all(data)
            .and_then(|_| f.sync_all())
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    write("key.pem", ck.signing_key.serialize_pem().as_bytes(), 0o600)?;
    write("cert.pem", ck.cert.pem().as_bytes(), 0o644)?;
    info!(dir = %dir.display(), "generated a self-signed certificate");
    Ok(())
}

/// SHA-256 of the first certificate in a PEM file, as colon-separated hex.
pub fn fingerprint_pem(pem: &[u8]) -> String {
    use base64::Engine;
    let text = String::from_utf8_lossy(pem);
    let b64: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_default();
    let d = Sha256::digest(&der);
    d.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
