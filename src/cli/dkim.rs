//! `zolder dkim keygen DOMAIN --selector S [--out FILE] [--algorithm rsa|ed25519]`:
//! writes a new DKIM private key (mode 0600; RSA-2048 by default) to
//! `data_dir/dkim/DOMAIN.S.key` unless `--out`, and prints its path, the DNS TXT
//! record to publish and the `[[dkim]]` lines for zolder.toml.

use std::path::{Path, PathBuf};

use super::{EX_CANTCREAT, EX_OK, load_config};
use crate::relay::dkim::{self, Algorithm};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Make a signing key for DOMAIN and print the TXT record to publish.
    #[command(
        after_help = "Example:\n  zolder dkim keygen zolder.example --selector 2026\n  zolder dkim keygen zolder.example --selector ed2026 --algorithm ed25519"
    )]
    Keygen {
        /// The domain that signs (the From: domain of outgoing mail).
        domain: String,
        /// The selector: the record is published at SELECTOR._domainkey.DOMAIN.
        #[arg(long, value_name = "S")]
        selector: String,
        /// Where to write the private key (default data_dir/dkim/DOMAIN.S.key).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Key type: rsa (2048 bits, the default) or ed25519 (RFC 8463).
        #[arg(long, value_enum, default_value = "rsa")]
        algorithm: Algorithm,
    },
}

pub fn run(path: &Path, args: Args) -> anyhow::Result<i32> {
    let Cmd::Keygen {
        domain,
        selector,
        out,
        algorithm,
    } = args.cmd;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty() || domain.contains(['@', ' ', '/']) {
        eprintln!("zolder: `{domain}` is not a domain");
        return Ok(super::EX_USAGE);
    }
    if selector.is_empty()
        || !selector
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        eprintln!("zolder: `{selector}` is not a selector (letters, digits, - . _)");
        return Ok(super::EX_USAGE);
    }
    let file = match out {
        Some(f) => f,
        None => {
            let cfg = match load_config(path) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            dkim::default_key_path(&cfg, &domain, &selector)
        }
    };
    let (pem, txt) = dkim::generate(algorithm).map_err(anyhow::Error::msg)?;
    if let Err(e) = dkim::write_key(&file, &pem) {
        eprintln!("zolder: {e}");
        return Ok(EX_CANTCREAT);
    }
    println!("{}", file.display());
    println!(
        "{selector}._domainkey.{domain}. IN TXT {}",
        zone_quoted(&txt)
    );
    println!();
    println!("# zolder.toml:");
    println!("[[dkim]]");
    println!("domain = \"{domain}\"");
    println!("selector = \"{selector}\"");
    println!("key_file = \"{}\"", file.display());
    Ok(EX_OK)
}

/// A TXT value as zone-file strings: quoted, in parts of at most 255 bytes.
pub fn zone_quoted(txt: &str) -> String {
    txt.as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}
