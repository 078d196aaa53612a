//! URLAUTH's INTERNAL mechanism (RFC 4467 §7): the token of a URL is
//! HMAC-SHA256(mailbox access key, rump URL), in hex; and who an access identifier
//! admits. Pure functions; the keys live in the database (see `imapd::urlauth`).

use sha2::{Digest, Sha256};

/// HMAC (RFC 2104) over SHA-256.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const B: usize = 64;
    let mut k = [0u8; B];
    if key.len() > B {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The INTERNAL token of `rump` under `key` (64 hex digits; RFC 4467 asks ≥ 32).
pub fn token(key: &[u8], rump: &str) -> String {
    hex::encode(hmac_sha256(key, rump.as_bytes()))
}

/// Compares a token in constant time (it is a secret a guesser must not time).
pub fn token_matches(key: &[u8], rump: &str, given: &str) -> bool {
    let want = token(key, rump);
    let given = given.to_ascii_lowercase();
    want.len() == given.len()
        && want
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Who is asking for a URL's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester<'a> {
    /// An IMAP session logged in as this user (URLFETCH).
    Imap(&'a str),
    /// The submission server acting for this SMTP-authenticated user (BURL).
    Submit(&'a str),
}

/// Whether an access identifier (RFC 4467 §3) admits `who`.
pub fn admits(access: &str, who: Requester<'_>) -> bool {
    let a = access.to_ascii_lowercase();
    match (a.split_once('+'), who) {
        (None, _) if a == "anonymous" => true,
        (None, Requester::Imap(_)) if a == "authuser" => true,
        (Some(("user", u)), Requester::Imap(me)) => u.eq_ignore_ascii_case(me),
        (Some(("submit", u)), Requester::Submit(me)) => u.eq_ignore_ascii_case(me),
        _ => false,
    }
}

/// Whether an access identifier is one GENURLAUTH may sign.
pub fn valid_access(access: &str) -> bool {
    let a = access.to_ascii_lowercase();
    match a.split_once('+') {
        None => a == "anonymous" || a == "authuser",
        Some((kind, user)) => (kind == "user" || kind == "submit") && !user.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_rfc4231_case_2() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn access_identifiers() {
        assert!(admits("submit+fred", Requester::Submit("fred")));
        assert!(!admits("submit+fred", Requester::Imap("fred")));
        assert!(admits("user+fred", Requester::Imap("FRED")));
        assert!(!admits("user+fred", Requester::Imap("joe")));
        assert!(admits("authuser", Requester::Imap("joe")));
        assert!(!admits("authuser", Requester::Submit("joe")));
        assert!(admits("anonymous", Requester::Submit("joe")));
        assert!(valid_access("submit+fred") && !valid_access("root") && !valid_access("user+"));
        let k = b"key";
        let t = token(k, "imap://a@b/INBOX/;UID=1;URLAUTH=anonymous");
        assert!(token_matches(
            k,
            "imap://a@b/INBOX/;UID=1;URLAUTH=anonymous",
            &t.to_uppercase()
        ));
        assert!(!token_matches(
            k,
            "imap://a@b/INBOX/;UID=2;URLAUTH=anonymous",
            &t
        ));
    }
}
