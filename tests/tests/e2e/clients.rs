//! The HTTP API as clients nobody here wrote see it: `openapi-spec-validator`
//! and schemathesis (every check) against `/openapi.json` of a real server,
//! and Google's own `google-resumable-media` client, unpatched, against the
//! seed's resumable upload and ranged download. The Python packages are
//! installed by the first test that needs them into `target/pyenv`
//! (pinned in `tests/python/requirements.txt`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use anyhow::{Context, bail};
use ferry_tests::{Client, Server};

type TestResult = anyhow::Result<()>;

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

/// The virtual environment with the pinned packages, made once per
/// requirements file (tests of this binary wait for each other here).
fn pyenv() -> anyhow::Result<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let venv = target.join("pyenv");
    let requirements = std::fs::read_to_string(python_dir().join("requirements.txt"))?;
    let stamp = venv.join("ferry-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(requirements.as_str()) {
        return Ok(venv);
    }
    let _ = std::fs::remove_dir_all(&venv);
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv), "python3 -m venv")?;
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(python_dir().join("requirements.txt")),
        "pip install -r tests/python/requirements.txt",
    )?;
    std::fs::write(&stamp, requirements)?;
    Ok(venv)
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<Output> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// A server whose long polls end after 1 s (`--poll-max-secs`), so that
/// generated polls (up to the API's 300 s) answer within the run's timeout.
fn server() -> anyhow::Result<Server> {
    Server::start_args(&["--poll-max-secs", "1"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_validates_and_schemathesis_finds_nothing() -> TestResult {
    let venv = tokio::task::spawn_blocking(pyenv).await??;
    let server = server()?;
    let alice = Client::user(&server, "alice", "schemathesis").await?;
    let doc = reqwest::get(format!("{}/openapi.json", server.url)).await?.text().await?;
    let dir = tempfile::tempdir()?;
    let spec = dir.path().join("openapi.json");
    std::fs::write(&spec, &doc)?;
    let out = run(Command::new(venv.join("bin/openapi-spec-validator")).arg(&spec), "openapi-spec-validator")?;
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());

    // Bounded and reproducible: a fixed seed and number of cases. Logging
    // out would revoke the token the run uses; the login test covers it.
    // Run from a temporary directory: schemathesis keeps a cache where it runs.
    let out = Command::new(venv.join("bin/st"))
        .current_dir(dir.path())
        .arg("--config-file")
        .arg(python_dir().join("schemathesis.toml"))
        .args(["run", &format!("{}/openapi.json", server.url)])
        .args(["--checks", "all", "--max-examples", "60", "--seed", "20261203", "--workers", "2"])
        .args(["--request-timeout", "30", "--exclude-path", "/auth/logout", "--no-color"])
        .args(["-H", &format!("Authorization: Bearer {}", alice.token)])
        .output()
        .context("running schemathesis")?;
    let report = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = report.lines().filter(|l| l.contains(" generated, ") || l.contains("Seed:")).collect();
    println!("schemathesis: {}", summary.join(" | ").trim());
    // Every finding fails the test. Only an exception inside schemathesis
    // itself, with no request of ours behind it, is reported and let pass:
    // a Python `KeyError` from its schema walker, seen now and then, and
    // CPython 3.11's `SystemError` "AST constructor recursion depth
    // mismatch" when hypothesis parses its own source to describe a filter.
    let findings = report.contains(" unique failure") || !report.contains(" generated, ");
    let section = errors_section(&report);
    let exceptions = exceptions_in(&section);
    let tool_error = |e: &String| {
        e == "KeyError" || (e == "SystemError" && section.contains("AST constructor recursion depth mismatch"))
    };
    let tool_errors_only = !exceptions.is_empty() && exceptions.iter().all(tool_error);
    if !out.status.success() && (findings || !tool_errors_only) {
        bail!(
            "schemathesis found problems:\n{report}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
    }
    if !out.status.success() {
        println!("schemathesis stumbled on its own (not a finding):\n{}", errors_section(&report));
    }
    assert!(report.contains("passed"), "{report}");
    Ok(())
}

/// The exception names in an ERRORS section (`KeyError: 'x'` → `KeyError`):
/// only schemathesis' own errors (see the test) are let pass; any other
/// exception fails the test.
fn exceptions_in(section: &str) -> Vec<String> {
    section
        .lines()
        .filter_map(|l| {
            let name = l.trim().split([':', ' ', '(']).next()?;
            let named = name.ends_with("Error") || name.ends_with("Exception");
            (named && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')).then(|| name.to_owned())
        })
        .collect()
}

/// The report's ERRORS section, up to the next one.
fn errors_section(report: &str) -> String {
    let Some(start) = report.find("ERRORS") else { return String::new() };
    let rest = &report[start..];
    let end = rest.find("FAILURES").or_else(|| rest.find("WARNINGS")).or_else(|| rest.find("SUMMARY"));
    rest[..end.unwrap_or(rest.len())].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_resumable_media_client_unpatched() -> TestResult {
    let venv = tokio::task::spawn_blocking(pyenv).await??;
    let server = server()?;
    let alice = Client::user(&server, "alice", "google").await?;
    let out = Command::new(venv.join("bin/python"))
        .arg(python_dir().join("google_resumable.py"))
        .args([&server.url, &alice.token])
        .output()
        .context("running google_resumable.py")?;
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());
    if !out.status.success() {
        bail!("Google's client failed:\n{}\nserver log:\n{}", String::from_utf8_lossy(&out.stderr), server.log());
    }
    // What it uploaded is there for Ferry's own clients too.
    let resp = alice.get("/files/list_revisions?path=google/big.bin").send().await?;
    assert_eq!(resp.status(), 200);
    Ok(())
}
