//! The `ferry-server` binary's administration commands (this test also makes
//! `cargo test --workspace` build the binary the end-to-end tests run).

use std::io::Write;
use std::process::{Command, Stdio};

fn run(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry-server"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn user_add_list_passwd_remove() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = run(&["user", "add", "carol", "--password-stdin", "--quota", "1GiB", "--data", data], "long-password\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dup = run(&["user", "add", "carol", "--password-stdin", "--data", data], "long-password\n");
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let short = run(&["user", "add", "dave", "--password-stdin", "--data", data], "short\n");
    assert!(!short.status.success());
    let list = run(&["user", "list", "--data", data], "");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("carol") && list.contains("1073741824"), "{list}");
    assert!(
        run(&["user", "passwd", "carol", "--password-stdin", "--data", data], "another-password\n").status.success()
    );
    assert!(run(&["user", "quota", "carol", "2GiB", "--data", data], "").status.success());
    let list = run(&["user", "list", "--data", data], "");
    assert!(String::from_utf8_lossy(&list.stdout).contains("2147483648"));
    assert!(!run(&["user", "quota", "nobody", "2GiB", "--data", data], "").status.success());
    assert!(!run(&["user", "quota", "carol", "2 parsecs", "--data", data], "").status.success());
    assert!(run(&["user", "remove", "carol", "--data", data], "").status.success());
    assert!(!run(&["user", "remove", "carol", "--data", data], "").status.success());
    #[cfg(unix)]
    {
        // The master key is created on first `serve`, not by user commands; the DB exists.
        assert!(dir.path().join("ferry.db").exists());
    }
}

#[test]
fn refuses_plain_http_on_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["serve", "--listen", "0.0.0.0:0", "--data", dir.path().to_str().unwrap()], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure-http"));
}
