//! Sequence sets (`1:4,7,9:*`): parsing, resolving `*`, membership, and writing
//! compact sets back out (for COPYUID/APPENDUID and ESEARCH `ALL`).

use std::fmt::Write;

/// One end of a range: a number or `*` (the largest number in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNum {
    Num(u32),
    Star,
}

impl SeqNum {
    fn resolve(self, max: u32) -> u32 {
        match self {
            SeqNum::Num(n) => n,
            SeqNum::Star => max,
        }
    }
}

/// A sequence set as the client wrote it; resolve it against a mailbox with
/// [`SeqSet::contains`] or [`SeqSet::ranges`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqSet(pub Vec<(SeqNum, SeqNum)>);

impl SeqSet {
    /// `$`, the saved search result (RFC 5182); resolved by the session's view.
    pub fn saved() -> SeqSet {
        SeqSet(vec![(SeqNum::Num(0), SeqNum::Num(0))])
    }

    /// Whether this is `$` (0 is never a valid number, so the marker cannot clash).
    pub fn is_saved(&self) -> bool {
        self.0 == [(SeqNum::Num(0), SeqNum::Num(0))]
    }

    /// Parses `1`, `1:5`, `*`, `3:*`, comma-separated; `None` when malformed or a zero.
    pub fn parse(s: &str) -> Option<SeqSet> {
        let mut out = Vec::new();
        for item in s.split(',') {
            let (a, b) = match item.split_once(':') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => {
                    let n = num(item)?;
                    (n, n)
                }
            };
            out.push((a, b));
        }
        if out.is_empty() {
            return None;
        }
        Some(SeqSet(out))
    }

    /// The set's ranges with `*` replaced by `max`, each as (low, high).
    pub fn ranges(&self, max: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.0.iter().map(move |&(a, b)| {
            let (a, b) = (a.resolve(max), b.resolve(max));
            if a <= b { (a, b) } else { (b, a) }
        })
    }

    /// The ranges resolved against `max`, sorted, overlapping and adjacent ones merged:
    /// what the set names, once. `FETCH 1:*,1:*,…` (16 000 copies) becomes one range,
    /// so expanding it costs the mailbox, not the repetition.
    pub fn normalized(&self, max: u32) -> Vec<(u32, u32)> {
        let mut r: Vec<(u32, u32)> = self.ranges(max).collect();
        r.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(r.len().min(64));
        for (a, b) in r {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        out
    }

    pub fn contains(&self, n: u32, max: u32) -> bool {
        self.ranges(max).any(|(a, b)| a <= n && n <= b)
    }

    /// Whether the set uses `*` anywhere.
    pub fn has_star(&self) -> bool {
        self.0
            .iter()
            .any(|&(a, b)| a == SeqNum::Star || b == SeqNum::Star)
    }
}

fn num(s: &str) -> Option<SeqNum> {
    if s == "*" {
        return Some(SeqNum::Star);
    }
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
        return None;
    }
    s.parse::<u32>().ok().map(SeqNum::Num)
}

/// Writes sorted numbers as a compact set: `[1,2,3,7]` → `1:3,7`.
pub fn compact(nums: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < nums.len() {
        let start = nums[i];
        let mut end = start;
        while i + 1 < nums.len() && nums[i + 1] == end + 1 {
            i += 1;
            end = nums[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}:{end}");
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_merges_and_dedups() {
        let rep = vec!["1:*"; 16_000].join(",");
        let s = SeqSet::parse(&rep).unwrap();
        assert_eq!(s.normalized(1000), vec![(1, 1000)]);
        let s = SeqSet::parse("9:7,1,2,3:4,20,6,5:5,30:*").unwrap();
        assert_eq!(s.normalized(25), vec![(1, 9), (20, 20), (25, 30)]);
    }

    #[test]
    fn parse_and_resolve() {
        let s = SeqSet::parse("1:3,7,9:*").unwrap();
        assert!(s.contains(2, 20));
        assert!(!s.contains(5, 20));
        assert!(s.contains(20, 20));
        assert!(s.has_star());
        let r = SeqSet::parse("5:2").unwrap();
        assert_eq!(r.ranges(10).collect::<Vec<_>>(), vec![(2, 5)]);
        assert!(SeqSet::parse("0").is_none());
        assert!(SeqSet::parse("1,,2").is_none());
        assert!(SeqSet::parse("a").is_none());
        assert!(SeqSet::parse("*").unwrap().contains(4, 4));
    }

    #[test]
    fn compact_sets() {
        assert_eq!(compact(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
        assert_eq!(compact(&[]), "");
        assert_eq!(compact(&[4]), "4");
    }
}
