//! Opening a connection to the ISP: TCP with a timeout, then TLS (implicit, or later by
//! STARTTLS/STLS through [`upgrade`]) with certificate checks on.
//!
//! Owns the TLS policy toward the ISP and nothing else; it reads only the account's
//! `ca_file` and `tls_fingerprint`.
//!
//! # Security
//! Certificates are checked against the system roots plus `ca_file`, and the host name
//! must match. With `tls_fingerprint` the chain and name checks are replaced by a pin:
//! the server certificate's SHA-256 (64 hex digits) or MD5 (32, as fetchmail's
//! `sslfingerprint` writes it) must equal the configured digest, compared after the
//! handshake and before a single protocol byte is sent. TLS 1.2 is the floor unless
//! `tls_min_version` says otherwise.

use std::time::Duration;

use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use super::FetchError;
use crate::config::AccountConfig;
use crate::net::Stream;

/// How long a connect or TLS handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the server when the account sets no `timeout` (fetchmail's 300 s).
pub const READ_TIMEOUT: Duration = Duration::from_secs(300);

/// The account's `timeout`, or [`READ_TIMEOUT`].
pub fn read_timeout(acc: &AccountConfig) -> Duration {
    acc.timeout
        .map(|s| Duration::from_secs(s.max(1)))
        .unwrap_or(READ_TIMEOUT)
}

/// TCP connect to the account's host and port.
pub async fn tcp(acc: &AccountConfig) -> Result<Stream, FetchError> {
    let port = acc.effective_port();
    let addr = format!("{}:{}", acc.host, port);
    let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| FetchError::Connect(format!("{addr}: timed out")))?
        .map_err(|e| FetchError::Connect(format!("{addr}: {e}")))?;
    let _ = s.set_nodelay(true);
    Ok(Stream::Plain(s))
}

/// The TLS connector for this account: system roots + `ca_file`; with a pin, no chain
/// or name checks (the pin is checked in [`upgrade`]).
pub fn connector(acc: &AccountConfig) -> Result<async_native_tls::TlsConnector, FetchError> {
    let mut b = native_tls::TlsConnector::builder();
    // TLS 1.2 unless the account asks otherwise (fetchmail `sslproto`).
    let floor = match acc
        .tls_min_version
        .as_deref()
        .map(|v| v.trim_start_matches("tls"))
    {
        None | Some("1.2") => native_tls::Protocol::Tlsv12,
        Some("1.3") => native_tls::Protocol::Tlsv13,
        Some("1.1") => native_tls::Protocol::Tlsv11,
        Some("1.0") => native_tls::Protocol::Tlsv10,
        Some(v) => {
            return Err(FetchError::Config(format!(
                "account {}: tls_min_version `{v}` is not 1.0, 1.1, 1.2 or 1.3",
                acc.name
            )));
        }
    };
    b.min_protocol_version(Some(floor));
    if let Some(ca) = &acc.ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| FetchError::Config(format!("ca_file {}: {e}", ca.display())))?;
        let cert = native_tls::Certificate::from_pem(&pem)
            .map_err(|e| FetchError::Config(format!("ca_file {}: {e}", ca.display())))?;
        b.add_root_certificate(cert);
    }
    if acc.tls_fingerprint.is_some() {
        b.danger_accept_invalid_certs(true);
        b.danger_accept_invalid_hostnames(true);
    }
    Ok(async_native_tls::TlsConnector::from(b))
}

/// TLS handshake on `s` toward the account's host, then the pin check if configured.
pub async fn upgrade(acc: &AccountConfig, s: Stream) -> Result<Stream, FetchError> {
    let conn = connector(acc)?;
    let s = tokio::time::timeout(CONNECT_TIMEOUT, s.connect_tls(&conn, &acc.host))
        .await
        .map_err(|_| FetchError::Tls(format!("{}: TLS handshake timed out", acc.host)))?
        .map_err(|e| FetchError::Tls(format!("{}: {e}", acc.host)))?;
    if let Some(pin) = &acc.tls_fingerprint {
        let Stream::Tls(t) = &s else {
            return Err(FetchError::Tls("not TLS".into()));
        };
        let der = t
            .peer_certificate()
            .ok()
            .flatten()
            .and_then(|c| c.to_der().ok())
            .ok_or_else(|| FetchError::Tls(format!("{}: no server certificate", acc.host)))?;
        check_pin(pin, &der).map_err(|got| {
            FetchError::Tls(format!(
                "{}: certificate fingerprint {got} does not match tls_fingerprint {pin}",
                acc.host
            ))
        })?;
    }
    Ok(s)
}

/// Compares a certificate (DER) with a pin written as hex, with or without colons:
/// 64 digits = SHA-256, 32 = MD5. Err carries the actual digest, in the pin's kind.
pub fn check_pin(pin: &str, der: &[u8]) -> Result<(), String> {
    let want: String = pin
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_ascii_lowercase();
    let got = if want.len() == 32 {
        hex::encode(Md5::digest(der))
    } else {
        hex::encode(Sha256::digest(der))
    };
    if got == want { Ok(()) } else { Err(got) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_sha256_and_md5_with_colons() {
        let der = b"not really a certificate";
        let sha = hex::encode(Sha256::digest(der));
        let md = hex::encode(Md5::digest(der)).to_uppercase();
        let md_colons: Vec<String> = md
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        assert!(check_pin(&sha, der).is_ok());
        assert!(check_pin(&md_colons.join(":"), der).is_ok());
        assert_eq!(check_pin(&"0".repeat(64), der), Err(sha));
    }
}
