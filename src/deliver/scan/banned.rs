//! Banned attachments, after amavis' Debian defaults (`$banned_filename_re`):
//! executable extensions (`.exe .vbs .pif .scr .bat .cmd .com .cpl`), a double extension
//! ending in one of those or `.dll` (`invoice.pdf.exe`), a Windows CLSID in the name,
//! the MIME types `application/x-msdownload`, `application/x-msdos-program`,
//! `application/hta`, and a Windows PE executable by content (amavis' `exe-ms`),
//! whatever its name. Every MIME part, nested message and zip member is checked
//! (amavis checks archive members too).
//!
//! Pure: no I/O beyond reading the message bytes given.
//!
//! # Security
//! The message is attacker-controlled: parsing goes through mail-parser; zip archives
//! are opened from memory with bounded member counts, nesting depth and inflated sizes
//! (amavis' `$MAXLEVELS`/`$MAXFILES` spirit), so a zip bomb costs little.

use std::collections::HashSet;
use std::io::{Cursor, Read};

use mail_parser::{Message, MimeHeaders, PartType};

use super::{Check, Checked, Verdict};
use crate::config::scan::ScanConfig;
use crate::message::Envelope;

/// Amavis' basic banned extensions.
pub const DEFAULT_EXTENSIONS: &[&str] = &["exe", "vbs", "pif", "scr", "bat", "cmd", "com", "cpl"];
/// Extensions banned only as the last of a double extension (`x.pdf.dll`).
pub const DOUBLE_ONLY_EXTENSIONS: &[&str] = &["dll"];
/// Amavis' banned MIME types.
pub const DEFAULT_TYPES: &[&str] = &[
    "application/x-msdownload",
    "application/x-msdos-program",
    "application/hta",
];

/// Most archive members looked at, in total (amavis' `$MAXFILES` is 1500).
const MAX_MEMBERS: usize = 1500;
/// Nested archives opened at most this deep.
const MAX_ZIP_DEPTH: usize = 3;
/// A nested zip is inflated only up to this size to look inside it.
const MAX_INNER_ZIP: u64 = 16 * 1024 * 1024;
/// Nested messages (message/rfc822) followed at most this deep.
const MAX_MESSAGE_DEPTH: usize = 8;

/// The banned-content check.
#[derive(Debug, Clone)]
pub struct Banned {
    extensions: HashSet<String>,
    double: HashSet<String>,
    types: HashSet<String>,
}

impl Default for Banned {
    fn default() -> Self {
        Banned::new(&[], &[], &[])
    }
}

impl Banned {
    /// Defaults plus `extra` extensions and types, minus `allowed` extensions.
    pub fn new(extra: &[String], extra_types: &[String], allowed: &[String]) -> Banned {
        let norm = |s: &String| s.trim().trim_start_matches('.').to_ascii_lowercase();
        let allowed: HashSet<String> = allowed.iter().map(norm).collect();
        let mut extensions: HashSet<String> = DEFAULT_EXTENSIONS
            .iter()
            .map(|s| s.to_string())
            .chain(extra.iter().map(norm))
            .collect();
        extensions.retain(|e| !e.is_empty() && !allowed.contains(e));
        let mut double = extensions.clone();
        double.extend(
            DOUBLE_ONLY_EXTENSIONS
                .iter()
                .map(|s| s.to_string())
                .filter(|e| !allowed.contains(e)),
        );
        let types = DEFAULT_TYPES
            .iter()
            .map(|s| s.to_string())
            .chain(extra_types.iter().map(|t| t.trim().to_ascii_lowercase()))
            .collect();
        Banned {
            extensions,
            double,
            types,
        }
    }

    pub fn from_config(sc: &ScanConfig) -> Banned {
        Banned::new(
            &sc.banned_extensions,
            &sc.banned_types,
            &sc.allowed_extensions,
        )
    }

    /// Why `name` (a file name as declared, or an archive member path) is banned.
    pub fn check_name(&self, name: &str) -> Option<String> {
        // Windows ignores trailing dots and spaces; the last path component is the file.
        let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
        let base = base.trim_end_matches(['.', ' ', '\t']);
        let lower = base.to_ascii_lowercase();
        if has_clsid(&lower) {
            return Some(format!("{name:?}: Windows class id in the name"));
        }
        let mut parts = lower.rsplit('.');
        let last = parts.next()?;
        let Some(before) = parts.next() else {
            return None; // no dot at all
        };
        // A double extension: `.x.exe` where x has no dot or slash (amavis'
        // `\.[^./]*\.(exe|…|dll)\.?$`). `before` is what precedes the last dot;
        // a further dot in front of it makes `before` an extension.
        let before_is_ext = parts.next().is_some();
        if before_is_ext && self.double.contains(last) {
            return Some(format!("{name:?}: double extension .{before}.{last}"));
        }
        // Basic: `.\.(exe|…)$`: at least one character before the dot.
        if self.extensions.contains(last) && (!before.is_empty() || before_is_ext) {
            return Some(format!("{name:?}: .{last} file"));
        }
        None
    }

    /// Why the MIME type `ctype` is banned.
    pub fn check_type(&self, ctype: &str) -> Option<String> {
        let t = ctype.trim().to_ascii_lowercase();
        self.types.contains(&t).then(|| format!("MIME type {t}"))
    }

    /// Checks a whole message; returns the first reason found.
    pub fn scan(&self, message: &[u8]) -> Option<String> {
        let parsed = crate::message::mime_limits::parse(message)?;
        let mut budget = MAX_MEMBERS;
        let mut parts = crate::message::mime_limits::Budget::new();
        self.scan_message(&parsed, 0, &mut budget, &mut parts)
    }

    /// Past the MIME limits (`mime_limits`) the rest is not looked at.
    fn scan_message(
        &self,
        msg: &Message<'_>,
        depth: usize,
        budget: &mut usize,
        parts: &mut crate::message::mime_limits::Budget,
    ) -> Option<String> {
        for part in &msg.parts {
            if !parts.enter(depth) {
                return None;
            }
            let ctype = part
                .content_type()
                .map(|c| match c.subtype() {
                    Some(s) => format!("{}/{}", c.ctype(), s),
                    None => c.ctype().to_string(),
                })
                .unwrap_or_default();
            let name = part.attachment_name();
            if let Some(r) = self.check_type(&ctype) {
                return Some(match name {
                    Some(n) => format!("{n:?}: {r}"),
                    None => r,
                });
            }
            if let Some(n) = name
                && let Some(r) = self.check_name(n)
            {
                return Some(r);
            }
            match &part.body {
                PartType::Message(inner) if depth < MAX_MESSAGE_DEPTH => {
                    if let Some(r) = self.scan_message(inner, depth + 1, budget, parts) {
                        return Some(r);
                    }
                }
                PartType::Binary(b) | PartType::InlineBinary(b) => {
                    let label = name.unwrap_or("attachment");
                    if is_pe_executable(b) {
                        return Some(format!("{label:?}: Windows executable by content"));
                    }
                    if is_zip(b)
                        && let Some(r) = self.scan_zip(b, label, 0, budget)
                    {
                        return Some(r);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Looks at the member names of a zip archive (and of zips inside it).
    fn scan_zip(
        &self,
        data: &[u8],
        label: &str,
        depth: usize,
        budget: &mut usize,
    ) -> Option<String> {
        let mut zip = zip::ZipArchive::new(Cursor::new(data)).ok()?;
        for i in 0..zip.len() {
            if *budget == 0 {
                return None;
            }
            *budget -= 1;
            let Ok(mut member) = zip.by_index(i) else {
                continue; // encrypted or unsupported: the name is still in the raw entry
            };
            let mname = member.name().to_string();
            if let Some(r) = self.check_name(&mname) {
                return Some(format!("{label} contains {r}"));
            }
            let nested = mname.to_ascii_lowercase().ends_with(".zip");
            if nested && depth + 1 < MAX_ZIP_DEPTH && member.size() <= MAX_INNER_ZIP {
                let mut inner = Vec::new();
                if (&mut member)
                    .take(MAX_INNER_ZIP)
                    .read_to_end(&mut inner)
                    .is_ok()
                    && let Some(r) =
                        self.scan_zip(&inner, &format!("{label}/{mname}"), depth + 1, budget)
                {
                    return Some(r);
                }
            } else if !nested {
                let mut head = [0u8; 512];
                let n = read_up_to(&mut member, &mut head);
                if is_pe_executable(&head[..n]) {
                    return Some(format!(
                        "{label} contains {mname:?}: Windows executable by content"
                    ));
                }
            }
        }
        None
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

fn is_zip(b: &[u8]) -> bool {
    b.starts_with(b"PK\x03\x04") || b.starts_with(b"PK\x05\x06")
}

/// An `MZ` header whose `e_lfanew` points at a `PE\0\0` signature (what file(1) calls
/// "PE32 executable (MS Windows)"); a bare "MZ" at the start of a text is not enough.
pub fn is_pe_executable(b: &[u8]) -> bool {
    if b.len() < 0x40 || !b.starts_with(b"MZ") {
        return false;
    }
    let off = u32::from_le_bytes([b[0x3c], b[0x3d], b[0x3e], b[0x3f]]) as usize;
    // When the PE header lies beyond what we have (a member's first 512 bytes), the MZ
    // stub with a plausible offset is enough.
    if off + 4 > b.len() {
        return (0x40..64 * 1024).contains(&off);
    }
    &b[off..off + 4] == b"PE\0\0"
}

/// `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}` at the end (closing brace optional).
fn has_clsid(lower: &str) -> bool {
    let s = lower.strip_suffix('}').unwrap_or(lower);
    if s.len() < 37 {
        return false;
    }
    let tail = &s.as_bytes()[s.len() - 37..];
    if tail[0] != b'{' {
        return false;
    }
    let g = &tail[1..];
    g.iter().enumerate().all(|(i, &c)| match i {
        8 | 13 | 18 | 23 => c == b'-',
        _ => c.is_ascii_hexdigit(),
    })
}

#[async_trait::async_trait]
impl Check for Banned {
    fn name(&self) -> &'static str {
        "banned"
    }
    async fn check(&self, message: &[u8], _envelope: &Envelope) -> Checked {
        let this = self.clone();
        let bytes = message.to_vec();
        // Parsing and inflating is CPU work: keep it off the async workers.
        let found = tokio::task::spawn_blocking(move || this.scan(&bytes))
            .await
            .unwrap_or_else(|e| Some(format!("checker crashed: {e}")));
        match found {
            Some(reason) => Checked::new(Verdict::Banned(reason)),
            None => Checked::new(Verdict::Clean),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use std::io::Write;

    fn b() -> Banned {
        Banned::default()
    }

    #[test]
    fn names() {
        let b = b();
        for bad in [
            "setup.exe",
            "SETUP.EXE",
            "invoice.pdf.exe",
            "photo.jpg            .scr",
            "x.bat.",
            "dir/sub/evil.pif",
            "C:\\temp\\evil.cmd",
            "report.doc.dll",
            "file{00021401-0000-0000-c000-000000000046}",
            "file{00021401-0000-0000-C000-000000000046",
        ] {
            assert!(b.check_name(bad).is_some(), "{bad} should be banned");
        }
        for ok in [
            "report.pdf",
            "exe",
            ".exe",
            "library.dll",
            "notes.txt",
            "archive.zip",
            "com",
            "my.computer.jpg",
        ] {
            assert!(
                b.check_name(ok).is_none(),
                "{ok} should pass: {:?}",
                b.check_name(ok)
            );
        }
        assert!(
            b.check_name("invoice.pdf.exe")
                .unwrap()
                .contains("double extension")
        );
    }

    #[test]
    fn configurable_lists() {
        let b = Banned::new(
            &["js".into()],
            &["application/x-foo".into()],
            &["bat".into()],
        );
        assert!(b.check_name("a.js").is_some());
        assert!(b.check_name("a.bat").is_none());
        assert!(b.check_name("a.exe").is_some());
        assert!(b.check_type("Application/X-Foo").is_some());
        assert!(b.check_type("application/hta").is_some());
        assert!(b.check_type("application/pdf").is_none());
    }

    fn mail_with(name: &str, ctype: &str, data: &[u8]) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        format!(
            "From: a@example.org\r\nTo: b@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n--BB\r\n\
             Content-Type: text/plain\r\n\r\nsee attachment\r\n--BB\r\n\
             Content-Type: {ctype}; name=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n{b64}\r\n--BB--\r\n"
        )
        .into_bytes()
    }

    fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (n, d) in files {
            w.start_file(*n, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(d).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn messages_parts_zips() {
        let b = b();
        assert!(
            b.scan(&mail_with("a.pdf", "application/pdf", b"%PDF-1.4"))
                .is_none()
        );
        assert!(
            b.scan(&mail_with(
                "invoice.pdf.exe",
                "application/octet-stream",
                b"x"
            ))
            .is_some()
        );
        assert!(
            b.scan(&mail_with("a.bin", "application/x-msdownload", b"x"))
                .is_some()
        );
        let z = zip_of(&[("readme.txt", b"hi"), ("foto/expander.exe", b"x")]);
        let r = b
            .scan(&mail_with("foto.zip", "application/zip", &z))
            .unwrap();
        assert!(r.contains("expander.exe"), "{r}");
        let clean = zip_of(&[("readme.txt", b"hi")]);
        assert!(
            b.scan(&mail_with("foto.zip", "application/zip", &clean))
                .is_none()
        );
        // A zip in a zip, named innocently.
        let inner = zip_of(&[("run.scr", b"x")]);
        let outer = zip_of(&[("docs.zip", &inner)]);
        assert!(
            b.scan(&mail_with("docs.dat", "application/octet-stream", &outer))
                .is_some()
        );
        // An executable renamed to .wav (amavis' `message.scr` as audio/x-wav example).
        let mut pe = vec![0u8; 0x100];
        pe[0..2].copy_from_slice(b"MZ");
        pe[0x3c] = 0x80;
        pe[0x80..0x84].copy_from_slice(b"PE\0\0");
        assert!(b.scan(&mail_with("song.wav", "audio/x-wav", &pe)).is_some());
        // Nested message/rfc822.
        let inner_mail = mail_with("x.vbs", "text/plain", b"x");
        let mut outer_mail = b"From: a@b.example\r\nSubject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n".to_vec();
        outer_mail.extend_from_slice(&inner_mail);
        assert!(b.scan(&outer_mail).is_some());
        // Plain text mail.
        assert!(
            b.scan(b"Subject: hi\r\n\r\nMZ is a good start\r\n")
                .is_none()
        );
    }
}
