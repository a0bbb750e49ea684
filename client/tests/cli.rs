//! The `ferry` binary's command line (this test also makes `cargo test
//! --workspace` build the binary the end-to-end tests run).

use std::process::Command;

#[test]
fn commands_without_login_say_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry")).arg("daemon").env("FERRY_HOME", home.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ferry login"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_ferry")).arg("status").env("FERRY_HOME", home.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ferry daemon"));
}

#[test]
fn errors_are_one_sentence_unless_asked_for_more() {
    let home = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .env("FERRY_HOME", home.path())
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&["links"]);
    assert!(err.starts_with("ferry: reading ") && err.contains("log in first with `ferry login`"), "{err}");
    assert!(!err.contains("backtrace") && err.lines().count() == 1, "{err}");
    let err = run(&["links", "-v"]);
    assert!(err.contains("Caused by") || err.contains("backtrace"), "{err}");
}
