//! The fetchmailrc importer through the real binary: `zolder check` with
//! `fetchmailrc = "…"` (the committed example passes from a fresh clone; a broken file
//! is named by file, line and keyword), `zolder import-fetchmailrc` (permission rule,
//! password placeholders, `.fetchids` import into the config's database), and
//! `load_accounts` keeping the scheduler's view consistent.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn zolder() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zolder"));
    c.env_remove("ZOLDER_CONFIG")
        .env_remove("FETCHMAILHOME")
        // Never the tester's own ~/.netrc.
        .env("NETRC", "/nonexistent/netrc");
    c
}

fn run(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = zolder().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

/// The examples folder, copied with fresh-clone modes (0644).
fn examples_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            let to = dir.path().join(e.file_name());
            std::fs::copy(e.path(), &to).unwrap();
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    dir
}

const CONFIG: &str = "hostname = \"zolder.test\"\ndata_dir = \"data\"\npostmaster = \"bouke\"\nfetchmailrc = \"rc\"\n\n[[users]]\nname = \"bouke\"\n";

#[test]
fn example_fetchmailrc_passes_check_from_a_fresh_clone() {
    let dir = examples_copy();
    let cfg = dir.path().join("zolder-fetchmailrc.toml");
    let (code, out, err) = run(&["--config".as_ref(), cfg.as_os_str(), "check".as_ref()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("4 account(s)"), "{out}");
    // The only complaints: the password files a fresh clone does not have.
    for line in out.lines().filter(|l| l.starts_with("warning")) {
        assert!(line.contains("does not exist yet"), "{line}");
    }
    // And the import prints TOML that the config loader takes back.
    let rc = dir.path().join("fetchmailrc");
    let (code, toml_text, err) = run(&["import-fetchmailrc".as_ref(), rc.as_os_str()]);
    assert_eq!(code, 0, "{err}");
    let back = zolder::config::Config::from_str_at(&toml_text, &dir.path().join("x.toml"), false)
        .unwrap_or_else(|e| panic!("{e}\n{toml_text}"));
    assert_eq!(back.accounts.len(), 4);
    let sjoerd = back
        .accounts
        .iter()
        .find(|a| a.username == "sjoerd")
        .unwrap();
    assert!(sjoerd.idle && sjoerd.keep);
    assert_eq!(sjoerd.folders, ["INBOX", "Lists.debian", "Work"]);
    let drop = back
        .accounts
        .iter()
        .find(|a| a.username == "devries-drop")
        .unwrap();
    let md = drop.multidrop.as_ref().unwrap();
    assert_eq!(md.envelope.as_deref(), Some("X-Original-To"));
    assert_eq!(md.map.get("pa").map(String::as_str), Some("sjoerd"));
}

#[test]
fn broken_fetchmailrc_is_named_by_file_line_and_keyword() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "z.toml", CONFIG, 0o644);
    write(
        dir.path(),
        "rc",
        "set daemon 600\npoll pop.example.net proto pop3\n  user u password p is bouke here keep timeout 60\n",
        0o600,
    );
    let (code, out, _) = run(&["--config".as_ref(), cfg.as_os_str(), "check".as_ref()]);
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("rc:3: at `timeout`"), "{out}");
    assert!(out.contains("server option after user options"), "{out}");

    // The library view the scheduler uses: an error, so it keeps its old accounts.
    let c = zolder::config::Config::load(&cfg).unwrap();
    assert!(zolder::config::fetchmailrc::load_accounts(&c).is_err());
    // Fixed: the account is back, with the file's inline password.
    write(
        dir.path(),
        "rc",
        "set daemon 600\npoll pop.example.net proto pop3 timeout 60\n  user u password p is bouke here keep\n",
        0o600,
    );
    let (accounts, _) = zolder::config::fetchmailrc::load_accounts(&c).unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].password.as_deref(), Some("p"));
    assert_eq!(accounts[0].interval, Some(600));
    assert_eq!(accounts[0].timeout, Some(60));
    let (code, out, _) = run(&["--config".as_ref(), cfg.as_os_str(), "check".as_ref()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn readable_fetchmailrc_with_password_is_refused_with_chmod() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "z.toml", CONFIG, 0o644);
    let rc = write(
        dir.path(),
        "rc",
        "poll pop.example.net proto pop3 user u password hunter2 is bouke here\n",
        0o644,
    );
    let (code, out, err) = run(&["import-fetchmailrc".as_ref(), rc.as_os_str()]);
    assert_eq!(code, 77, "{out}{err}");
    assert!(out.is_empty(), "nothing printed: {out}");
    assert!(
        err.contains(&format!("chmod 600 {}", rc.display())),
        "{err}"
    );
    let (code, out, _) = run(&["--config".as_ref(), cfg.as_os_str(), "check".as_ref()]);
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("chmod 600"), "{out}");

    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out, err) = run(&["import-fetchmailrc".as_ref(), rc.as_os_str()]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("hunter2"), "{out}");
    assert!(
        out.contains("password_file = \"secrets/u@pop.example.net\""),
        "{out}"
    );
    let (_, out, _) = run(&[
        "import-fetchmailrc".as_ref(),
        rc.as_os_str(),
        "--with-passwords".as_ref(),
    ]);
    assert!(out.contains("password = \"hunter2\""), "{out}");
    let (code, out, _) = run(&["--config".as_ref(), cfg.as_os_str(), "check".as_ref()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn idfile_seen_state_lands_in_the_config_database() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "z.toml", CONFIG, 0o644);
    let rc = write(
        dir.path(),
        "rc",
        "set idfile \"ids\"\npoll isp via pop.example.net proto pop3 uidl\n  user u password p is bouke here keep\n",
        0o600,
    );
    write(
        dir.path(),
        "ids",
        "u@pop.example.net 0001abc\nu@pop.example.net 0002def\nother@elsewhere.example 9\n",
        0o600,
    );
    // The live path (`fetchmailrc = "rc"` in the config) finds the same state.
    let c = zolder::config::Config::load(&cfg).unwrap();
    let (idfile, plan) = zolder::config::fetchmailrc::load::live_seen_state(&c)
        .unwrap()
        .expect("set idfile");
    assert_eq!(idfile, dir.path().join("ids"));
    assert_eq!(
        plan.pop3,
        [(
            "u@isp".to_string(),
            vec!["0001abc".to_string(), "0002def".to_string()]
        )]
    );
    assert_eq!(plan.unmatched, [("other@elsewhere.example".to_string(), 1)]);
    // `set idfile` is found without --idfile.
    let (code, _, err) = run(&[
        "--config".as_ref(),
        cfg.as_os_str(),
        "import-fetchmailrc".as_ref(),
        rc.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("u@isp: 2 seen UIDLs (2 new)"), "{err}");
    assert!(
        err.contains("other@elsewhere.example: 1 UIDs match no account"),
        "{err}"
    );
    let conn = zolder::db::open(&dir.path().join("data/zolder.db")).unwrap();
    assert_eq!(
        zolder::db::fetchids::count_seen(&conn, "u@isp", "").unwrap(),
        2
    );
    drop(conn);

    // An explicit --idfile without a usable config is an error, not a silent skip.
    let ids = dir.path().join("ids");
    let (code, _, err) = run(&[
        "--config".as_ref(),
        dir.path().join("missing.toml").as_os_str(),
        "import-fetchmailrc".as_ref(),
        rc.as_os_str(),
        "--idfile".as_ref(),
        ids.as_os_str(),
    ]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("NOT imported"), "{err}");
}

#[test]
fn missing_passwords_come_from_netrc_when_it_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "z.toml", CONFIG, 0o644);
    // No secret in the rc itself: mode 644 is fine.
    write(
        dir.path(),
        "rc",
        "poll isp via pop.example.net proto pop3 user u is bouke here ssl\n",
        0o644,
    );
    let netrc = write(
        dir.path(),
        "netrc",
        "machine pop.example.net login u password fromnetrc\n",
        0o644,
    );
    let check = || {
        let out = zolder()
            .env("NETRC", &netrc)
            .arg("--config")
            .arg(&cfg)
            .arg("check")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // A readable .netrc is not used: the account has no credentials.
    let (code, out) = check();
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("not used for the missing passwords"), "{out}");
    assert!(out.contains("has no credentials"), "{out}");
    // Private: the password is found (by `via`, after the poll name), and said so.
    std::fs::set_permissions(&netrc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, out) = check();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("comes from"), "{out}");
    let out = zolder()
        .env("NETRC", &netrc)
        .arg("import-fetchmailrc")
        .arg(dir.path().join("rc"))
        .arg("--with-passwords")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("password = \"fromnetrc\""));
}

#[test]
fn stdin_is_read_like_fetchmail_f_dash() {
    use std::io::Write;
    let mut child = zolder()
        .args(["import-fetchmailrc", "-"])
        .env("HOME", "/nonexistent")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"poll pop.example.net proto pop3 user u password p is bob here keep\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("name = \"u@pop.example.net\""), "{text}");
    assert!(text.contains("deliver_to = [\"bob\"]"), "{text}");
}

/// The importer's output appended to a config in another folder passes `zolder check`:
/// password files are named as the config reads them (relative to its folder), and
/// the local names the accounts deliver to get `[[users]]` tables.
#[test]
fn import_output_appended_to_a_config_passes_check() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("etc")).unwrap();
    std::fs::create_dir_all(t.path().join("rc/secrets")).unwrap();
    let cfg = write(
        &t.path().join("etc"),
        "zolder.toml",
        "hostname = \"zolder.thuis\"\ndata_dir = \"data\"\npostmaster = \"bouke\"\n\n[[users]]\nname = \"bouke\"\n",
        0o600,
    );
    write(
        &t.path().join("rc"),
        "fetchmailrc",
        "poll pop.example proto pop3\n  user \"b\" there with passwordfile \"secrets/b\" is bouke here\n\
         poll imap.example proto imap\n  user \"a\" there with passwordfile \"secrets/a\" is anna here\n",
        0o600,
    );
    write(&t.path().join("rc/secrets"), "a", "pw\n", 0o600);
    write(&t.path().join("rc/secrets"), "b", "pw\n", 0o600);
    // Run from the folder above, with relative paths, as a person would.
    let out = zolder()
        .current_dir(t.path())
        .args([
            "--config",
            "etc/zolder.toml",
            "import-fetchmailrc",
            "rc/fetchmailrc",
        ])
        .output()
        .unwrap();
    let toml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(toml.contains("[[users]]\nname = \"anna\""), "{toml}");
    assert!(
        !toml.contains("name = \"bouke\"\n\n[[users]]"),
        "bouke is known: {toml}"
    );
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&toml);
    std::fs::write(&cfg, text).unwrap();
    let out = zolder()
        .arg("--config")
        .arg(&cfg)
        .arg("check")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(!said.contains("does not exist"), "{said}");
}
