//! `zolder check` through the real binary: the committed examples pass on a fresh
//! clone, and broken configs get an error naming the file, line, key and a hint.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn zolder() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zolder"));
    c.env_remove("ZOLDER_CONFIG");
    c
}

fn check(path: &Path) -> (i32, String) {
    let out = zolder()
        .arg("--config")
        .arg(path)
        .arg("check")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[test]
fn example_config_passes() {
    // Copy it so the check does not create anything inside the repository.
    let dir = tempfile::tempdir().unwrap();
    let ex = dir.path().join("examples");
    std::fs::create_dir(&ex).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), ex.join(e.file_name())).unwrap();
    }
    let (code, text) = check(&ex.join("zolder.toml"));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("ok"), "{text}");
}

#[test]
fn unknown_key_names_line_and_suggests() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "z.toml",
        "hostname = \"a.test\"\n\n[listen]\nimapp = \"127.0.0.1:1143\"\n",
        0o644,
    );
    let (code, text) = check(&p);
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("z.toml:4"), "{text}");
    assert!(text.contains("unknown key `imapp`"), "{text}");
    assert!(text.contains("did you mean `imap`"), "{text}");
}

#[test]
fn toml_syntax_error_names_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "z.toml",
        "hostname = \"a.test\"\nlocal_domains = [\"x\"\n",
        0o644,
    );
    let (code, text) = check(&p);
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("z.toml"), "{text}");
    assert!(text.contains("line"), "{text}");
}

#[test]
fn bad_values_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "z.toml",
        "hostname = \"a.test\"\n[listen]\nimap = \"localhost\"\n[[users]]\nname = \"../evil\"\npassword_hash = \"plain\"\n",
        0o644,
    );
    let (code, text) = check(&p);
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("listen.imap"), "{text}");
    assert!(text.contains("users[0].name"), "{text}");
    assert!(text.contains("users[0].password_hash"), "{text}");
}

#[test]
fn readable_secret_file_refused_with_chmod() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "isp-secret", "hunter2\n", 0o644);
    let p = write(
        dir.path(),
        "z.toml",
        "hostname = \"a.test\"\npostmaster = \"bouke\"\n[[users]]\nname = \"bouke\"\n\n[[accounts]]\nname = \"isp\"\nprotocol = \"pop3\"\nhost = \"pop.example.net\"\nusername = \"bouke\"\npassword_file = \"isp-secret\"\ndeliver_to = [\"bouke\"]\n",
        0o644,
    );
    let (code, text) = check(&p);
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("chmod 600"), "{text}");
    assert!(text.contains("isp-secret"), "{text}");
    std::fs::set_permissions(
        dir.path().join("isp-secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let (code, text) = check(&p);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn inline_password_needs_private_config() {
    let dir = tempfile::tempdir().unwrap();
    let body = "hostname = \"a.test\"\npostmaster = \"bouke\"\n[[users]]\nname = \"bouke\"\n\n[[accounts]]\nname = \"isp\"\nprotocol = \"imap\"\nhost = \"imap.example.net\"\nusername = \"bouke\"\npassword = \"hunter2\"\ndeliver_to = [\"bouke\"]\n";
    let p = write(dir.path(), "z.toml", body, 0o644);
    let (code, text) = check(&p);
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("chmod 600"), "{text}");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, text) = check(&p);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn environment_overrides_keys() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "z.toml",
        "hostname = \"a.test\"\n[smarthost]\nhost = \"smtp.example.net\"\nschedule = \"manual\"\n",
        0o644,
    );
    let out = zolder()
        .arg("--config")
        .arg(&p)
        .arg("check")
        .env("ZOLDER_SMARTHOST__SCHEDULE", "every now and then")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(78), "{text}");
    assert!(text.contains("smarthost.schedule"), "{text}");
    // ZOLDER_CONFIG finds the file when --config is absent.
    let out = zolder()
        .arg("check")
        .env("ZOLDER_CONFIG", &p)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Issue 13, finding 7: every inline secret, not only an account's `password`, is
/// refused in a config that group or others can read.
#[test]
fn inline_smarthost_and_oauth2_secrets_need_a_private_config() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"hostname = "a.test"
data_dir = "data"

[smarthost]
host = "smtp.provider.example"
username = "family"
password = "hunter2"
schedule = "manual"

[[accounts]]
name = "gmail"
protocol = "imap"
host = "imap.gmail.com"
username = "family@gmail.com"
deliver_to = ["bouke"]
oauth2 = { token_url = "https://oauth2.example/token", client_id = "id", client_secret = "s3cret", refresh_token = "r3fresh" }

[[users]]
name = "bouke"
"#;
    let p = write(dir.path(), "z.toml", text, 0o644);
    let (code, out) = check(&p);
    assert_ne!(code, 0, "{out}");
    for key in [
        "smarthost.password",
        "oauth2.client_secret",
        "oauth2.refresh_token",
    ] {
        assert!(out.contains(key), "{key} not refused: {out}");
    }
    assert!(out.contains("chmod 600"), "{out}");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (_, out) = check(&p);
    assert!(!out.contains("smarthost.password"), "{out}");
    assert!(!out.contains("oauth2.client_secret"), "{out}");
}

/// A problem names its key's own line (not the table's), and the hint for a missing
/// secret file is a command that works as printed (it makes the folder too).
#[test]
fn problem_lines_are_the_keys_own_and_the_secret_hint_runs() {
    let dir = tempfile::tempdir().unwrap();
    let text = "hostname = \"z.test\"\ndata_dir = \"data\"\n\n[[users]]\nname = \"bouke\"\n\n\
[[accounts]]\nname = \"a\"\nprotocol = \"pop3\"\nhost = \"pop.example\"\nusername = \"u\"\n\
password_file = \"secrets/a\"\ndeliver_to = [\"bouke\"]\n";
    let p = write(dir.path(), "zolder.toml", text, 0o600);
    let (code, out) = check(&p);
    assert_eq!(code, 0, "{out}");
    let line = out.lines().find(|l| l.contains("password_file")).unwrap();
    assert!(
        line.contains("zolder.toml:12: key `accounts[0].password_file`"),
        "{line}"
    );
    let hint = line
        .split("create it: ")
        .nth(1)
        .unwrap()
        .trim_end_matches(')');
    let cmd = hint.replace("PASSWORD", "s3cret");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("{cmd})"))
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(st.success(), "{cmd}");
    let (code, out) = check(&p);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("does not exist yet"), "{out}");
}
