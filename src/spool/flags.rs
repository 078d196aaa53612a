//! Message flags: IMAP system flags and keywords, their database form and their
//! Maildir `:2,` info form.
//!
//! Pure code, no I/O. System flags are kept in their canonical spelling (`\Seen`)
//! whatever case a client used; keywords (`$Junk`, `NonJunk`) are kept as given.
//! Maildir's info suffix can carry only the standard letters (D F P R S T); keywords
//! live in the index alone.

use std::collections::BTreeSet;
use std::fmt;

/// A set of flags, ordered, without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Flags(BTreeSet<String>);

/// (canonical IMAP flag, Maildir info letter), in the order Maildir wants the letters.
const MAILDIR_LETTERS: &[(&str, char)] = &[
    (Flags::DRAFT, 'D'),
    (Flags::FLAGGED, 'F'),
    (Flags::FORWARDED, 'P'),
    (Flags::ANSWERED, 'R'),
    (Flags::SEEN, 'S'),
    (Flags::DELETED, 'T'),
];

const SYSTEM: &[&str] = &[
    Flags::SEEN,
    Flags::ANSWERED,
    Flags::FLAGGED,
    Flags::DELETED,
    Flags::DRAFT,
];

impl Flags {
    pub const SEEN: &'static str = "\\Seen";
    pub const ANSWERED: &'static str = "\\Answered";
    pub const FLAGGED: &'static str = "\\Flagged";
    pub const DELETED: &'static str = "\\Deleted";
    pub const DRAFT: &'static str = "\\Draft";
    /// Not a system flag, but Maildir has a letter for it ('P', "passed").
    pub const FORWARDED: &'static str = "$Forwarded";

    pub fn new() -> Flags {
        Flags::default()
    }

    /// Parses the space-separated database form (also fine for IMAP flag lists
    /// without parentheses).
    pub fn parse(s: &str) -> Flags {
        s.split_ascii_whitespace().collect()
    }

    /// Adds a flag. System flags are canonicalised; `\Recent` is a session property,
    /// never stored, and is ignored.
    pub fn insert(&mut self, flag: &str) {
        let flag = flag.trim();
        if flag.is_empty() || flag.eq_ignore_ascii_case("\\Recent") {
            return;
        }
        self.0.insert(canonical(flag));
    }

    pub fn remove(&mut self, flag: &str) {
        let c = canonical(flag.trim());
        self.0.remove(&c);
    }

    pub fn contains(&self, flag: &str) -> bool {
        self.0.contains(&canonical(flag))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Union.
    pub fn add_all(&mut self, other: &Flags) {
        for f in other.iter() {
            self.insert(f);
        }
    }

    /// Difference.
    pub fn remove_all(&mut self, other: &Flags) {
        for f in other.iter() {
            self.remove(f);
        }
    }

    /// The database form: space-separated.
    pub fn to_db(&self) -> String {
        self.iter().collect::<Vec<_>>().join(" ")
    }

    /// The Maildir info letters ("FS" for `\Flagged \Seen`), in ASCII order.
    pub fn maildir_info(&self) -> String {
        MAILDIR_LETTERS
            .iter()
            .filter(|(f, _)| self.0.contains(*f))
            .map(|(_, c)| *c)
            .collect()
    }

    /// Flags from Maildir info letters (unknown letters, e.g. Dovecot's keyword
    /// letters a–z, are ignored).
    pub fn from_maildir_info(info: &str) -> Flags {
        let mut f = Flags::new();
        for c in info.chars() {
            if let Some((flag, _)) = MAILDIR_LETTERS.iter().find(|(_, l)| *l == c) {
                f.insert(flag);
            }
        }
        f
    }

    /// Only the flags Maildir info can express.
    pub fn maildir_part(&self) -> Flags {
        Flags::from_maildir_info(&self.maildir_info())
    }

    /// The flags Maildir info cannot express (keywords other than `$Forwarded`).
    pub fn keyword_part(&self) -> Flags {
        let mut k = self.clone();
        k.remove_all(&self.maildir_part());
        k
    }
}

fn canonical(flag: &str) -> String {
    if flag.starts_with('\\')
        && let Some(s) = SYSTEM.iter().find(|s| s.eq_ignore_ascii_case(flag))
    {
        return s.to_string();
    }
    if flag.eq_ignore_ascii_case(Flags::FORWARDED) {
        return Flags::FORWARDED.to_string();
    }
    flag.to_string()
}

impl<'a> FromIterator<&'a str> for Flags {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
        let mut f = Flags::new();
        for s in iter {
            f.insert(s);
        }
        f
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_db())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_and_maildir_round_trip() {
        let f = Flags::parse("\\seen \\FLAGGED $Junk \\Recent $forwarded");
        assert_eq!(f.to_db(), "$Forwarded $Junk \\Flagged \\Seen");
        assert_eq!(f.maildir_info(), "FPS");
        let back = Flags::from_maildir_info("FPSx");
        assert_eq!(back.to_db(), "$Forwarded \\Flagged \\Seen");
        assert_eq!(f.keyword_part().to_db(), "$Junk");
        assert!(f.contains("\\SEEN"));
    }
}
