//! Server lifecycle over real processes: HTTPS with rustls, graceful shutdown
//! releasing long polls, the README's first command (`quickstart` of both
//! binaries), a public URL behind a proxy that rewrites the Host, and the
//! refusal to serve plain HTTP beyond loopback.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ferry_tests::{Client, Daemon, Server, add_user, binary, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_https_with_given_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status();
    if !status.map(|s| s.success()).unwrap_or(false) {
        ferry_tests::skip("serves_https_with_given_certificate", "openssl cannot make a certificate here");
        return;
    }
    let data = tmp.path().join("data");
    add_user(&data, "alice", "password-alice", None).unwrap();
    let server =
        Server::start_with(&data, &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]).unwrap();
    assert!(server.url.starts_with("https://127.0.0.1:"), "{}", server.url);

    let pem = std::fs::read(&cert).unwrap();
    let http =
        reqwest::Client::builder().tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()]).build().unwrap();
    let resp = http
        .post(format!("{}/auth/login", server.url))
        .json(&serde_json::json!({"username": "alice", "password": "password-alice", "device_name": "tls"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", server.log());
    let token = resp.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let resp = http
        .post(format!("{}/files/upload?uploadType=media&path=secure.txt", server.url))
        .bearer_auth(&token)
        .body("over tls")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // A browser session's cookie is Secure under TLS.
    let resp = http
        .post(format!("{}/auth/session", server.url))
        .json(&serde_json::json!({"username": "alice", "password": "password-alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly"), "{cookie}");

    // Plain HTTP to the TLS port does not get an answer.
    let plain = reqwest::Client::new()
        .get(server.url.replace("https://", "http://") + "/health")
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_answers_long_polls() {
    let mut server = Server::start().unwrap();
    let alice = Client::user(&server, "alice", "laptop").await.unwrap();
    let poll = {
        let a = alice.clone();
        tokio::spawn(async move { a.get("/changes/poll?cursor=0&timeout=120").send().await })
    };
    // Stop the server only once the poll is parked (the server logs it).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !server.log().contains("long poll waiting") {
        assert!(std::time::Instant::now() < deadline, "the long poll never reached the server");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stopped = tokio::task::spawn_blocking(move || {
        server.stop().unwrap();
        server
    });
    let resp = tokio::time::timeout(Duration::from_secs(60), poll)
        .await
        .expect("the long poll was not released by the shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["changes"], false);
    stopped.await.unwrap();
}

/// A port free on 127.0.0.1 now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills a child on drop (a test that fails leaves nothing running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The value after `key` on a line of `text`.
fn after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.split_once(key).map(|(_, v)| v.trim()))
}

/// `ferry quickstart` from a clean home: it starts the embedded server,
/// creates `me`, prints where the credentials are; a second device logs in
/// with them and syncs; the same command again resumes (same server, same
/// user, the second device reconnects).
#[test]
fn ferry_quickstart_starts_from_a_clean_home_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, folder, out) = (tmp.path().join("home"), tmp.path().join("Ferry"), tmp.path().join("quickstart.out"));
    let addr = format!("127.0.0.1:{}", free_port());
    let start = |log: &Path| {
        Running(
            Command::new(binary("ferry"))
                .args(["quickstart", "--listen", &addr, "--folder"])
                .arg(&folder)
                .env("FERRY_HOME", &home)
                .env("HOME", tmp.path())
                .stdout(std::fs::File::create(log).unwrap())
                .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
                .spawn()
                .expect("ferry quickstart"),
        )
    };
    let first = start(&out);
    wait_until(Duration::from_secs(60), "quickstart to print the credentials", || {
        read(&out).contains("credentials (user and password): ")
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", read(&out), read(&out.with_extension("err"))));
    let text = read(&out);
    let creds = after(&text, "credentials (user and password): ").expect("credentials line").to_owned();
    let url = after(&text, "server (web API): ").and_then(|v| v.split_whitespace().next()).expect("url").to_owned();
    assert_eq!(url, format!("http://{addr}"));
    let creds_text = read(Path::new(&creds));
    assert_eq!(after(&creds_text, "user:"), Some("me"), "{creds_text}");
    let password = after(&creds_text, "password:").expect("a password line").to_owned();

    let phone = Daemon::start_with_password(&url, "me", &password, "phone", tmp.path(), &[]).expect("second device");
    std::fs::write(folder.join("hello.txt"), "from the quickstart device").unwrap();
    wait_until(Duration::from_secs(60), "hello.txt on the second device", || phone.path("hello.txt").exists())
        .unwrap_or_else(|e| panic!("{e}\n{}", phone.log()));

    // Stopped and started again: it resumes, nothing asked, nothing lost.
    drop(first);
    let out2 = tmp.path().join("quickstart-again.out");
    let _second = start(&out2);
    wait_until(Duration::from_secs(60), "the second quickstart to resume", || {
        read(&out2)
            .contains(&format!("Ferry is syncing {} with {url}", std::fs::canonicalize(&folder).unwrap().display()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", read(&out2), read(&out2.with_extension("err"))));
    std::fs::write(phone.path("back.txt"), "from the second device").unwrap();
    wait_until(Duration::from_secs(60), "back.txt on the quickstart device", || folder.join("back.txt").exists())
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", phone.log(), read(&out2.with_extension("err"))));
    assert_eq!(read(&folder.join("hello.txt")), "from the quickstart device");
}

/// `ferry-server quickstart`: creates `me` with a password in
/// `credentials.txt` (private), serves; a second start keeps the user and
/// the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_quickstart_creates_a_user_once() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ferry-data");
    let addr = format!("127.0.0.1:{}", free_port());
    let url = format!("http://{addr}");
    let start = || {
        let child = Command::new(binary("ferry-server"))
            .args(["quickstart", "--listen", &addr, "--data"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ferry-server quickstart");
        Running(child)
    };
    let health = |url: String| async move {
        for _ in 0..600 {
            if reqwest::get(format!("{url}/health")).await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the quickstart server never answered on {url}");
    };
    let first = start();
    health(url.clone()).await;
    let creds = data.join("credentials.txt");
    let text = read(&creds);
    let password = after(&text, "password:").expect("a password").to_owned();
    assert_eq!(std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777, 0o600, "credentials are private");
    Client::login(&url, "me", &password, "first").await.expect("the printed credentials log in");
    drop(first);
    let _second = start();
    health(url.clone()).await;
    assert_eq!(read(&creds), text, "a second start keeps the credentials");
    Client::login(&url, "me", &password, "second").await.expect("the same password after a restart");
}

/// Behind a proxy that rewrites the Host (as nginx does with `proxy_pass`
/// and no `proxy_set_header Host`), `--public-url` names the addresses
/// given to clients: links, resumable upload sessions; a browser session
/// cookie is Secure when the public URL is https.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_url_names_what_clients_are_given() {
    let public = "https://files.example.test";
    let server = Server::start_args(&["--public-url", public]).unwrap();
    let alice = Client::user(&server, "alice", "laptop").await.unwrap();
    let internal = "backend.internal:8080";
    alice.put_small("doc.txt", b"shared", None).await.unwrap();
    let link: serde_json::Value = alice
        .post("/links")
        .header("host", internal)
        .json(&serde_json::json!({"path": "doc.txt"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = link["url"].as_str().expect("a link url");
    assert!(url.starts_with(&format!("{public}/l/")), "{url}");
    let resp = alice
        .post("/files/upload?uploadType=resumable")
        .header("host", internal)
        .json(&serde_json::json!({"path": "big.bin", "size": 10}))
        .send()
        .await
        .unwrap();
    let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(location.starts_with(&format!("{public}/files/upload?")), "{} {location}", resp.status());
    let resp = reqwest::Client::new()
        .post(format!("{}/auth/session", server.url))
        .header("host", internal)
        .json(&serde_json::json!({"username": "alice", "password": "password-alice"}))
        .send()
        .await
        .unwrap();
    let cookie = resp.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(cookie.contains("; Secure"), "{} {cookie}", resp.status());
    // Without a public URL, the request's Host names them.
    let plain = Server::start().unwrap();
    let alice = Client::user(&plain, "alice", "laptop").await.unwrap();
    alice.put_small("doc.txt", b"x", None).await.unwrap();
    let link: serde_json::Value =
        alice.post("/links").json(&serde_json::json!({"path": "doc.txt"})).send().await.unwrap().json().await.unwrap();
    assert!(link["url"].as_str().is_some_and(|u| u.starts_with(&format!("{}/l/", plain.url))), "{link}");
}

/// Plain HTTP beyond loopback is refused with a message saying what to do;
/// `--insecure-http` (behind a TLS-terminating proxy) allows it.
#[test]
fn plain_http_beyond_loopback_needs_insecure_http() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    add_user(&data, "alice", "password-alice", None).unwrap();
    let out = Command::new(binary("ferry-server"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "plain HTTP on 0.0.0.0 was served");
    assert!(err.contains("--insecure-http") && err.contains("--tls-cert"), "{err}");
    let mut child = Running(
        Command::new(binary("ferry-server"))
            .args(["serve", "--listen", "0.0.0.0:0", "--insecure-http", "--data"])
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    let stdout = child.0.stdout.take().expect("piped");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    assert!(line.contains("http://"), "--insecure-http did not let the server start: {line:?}");
}

/// A single-node server grows into PostgreSQL + S3 as README tells
/// (`ferry-server migrate-to`, then serving from there at a new address)
/// while two devices sync with it: after `ferry server URL` on each, they
/// go on from where they were (nothing listed again, nothing deleted or
/// copied aside), with the history and the trash carried over.
#[test]
fn devices_follow_their_server_into_postgres_and_s3() {
    const T: Duration = Duration::from_secs(60);
    if ferry_tests::BackendChoice::from_env() != (ferry_tests::BackendChoice { postgres: false, s3: false }) {
        // (Selected in the SQLite run only: it grows a single-node server.)
        return ferry_tests::skip("devices_follow_their_server_into_postgres_and_s3", "a server on PostgreSQL already");
    }
    let mut server = Server::start().expect("server");
    let dir = tempfile::tempdir().unwrap();
    let a = Daemon::start(&server, "alice", "laptop", dir.path()).expect("daemon A");
    let b = Daemon::start(&server, "alice", "desktop", dir.path()).expect("daemon B");
    let big = ferry_tests::pseudo_random(3 << 20, 7);
    std::fs::create_dir_all(a.folder.join("docs")).unwrap();
    std::fs::write(a.folder.join("docs/a.txt"), "version one").unwrap();
    std::fs::write(a.folder.join("docs/big.bin"), &big).unwrap();
    std::fs::write(a.folder.join("old.txt"), "soon in the trash").unwrap();
    let on_b = |rel: &str, want: &[u8]| std::fs::read(b.folder.join(rel)).is_ok_and(|got| got == want);
    wait_until(T, "the first files on B", || on_b("docs/big.bin", &big) && on_b("old.txt", b"soon in the trash"))
        .unwrap();
    std::fs::write(a.folder.join("docs/a.txt"), "version two").unwrap();
    std::fs::remove_file(a.folder.join("old.txt")).unwrap();
    wait_until(T, "the edit and the deletion on B", || {
        on_b("docs/a.txt", b"version two") && !b.folder.join("old.txt").exists()
    })
    .unwrap();

    let old = server.url.clone();
    let printed = server.grow_into_postgres_and_s3().expect("migrate-to");
    assert_ne!(server.url, old);
    assert!(printed.contains("users"), "migrate-to's summary: {printed}");
    for d in [&a, &b] {
        let out = d.ferry(&["server", &server.url]).expect("ferry server URL");
        assert!(out.contains("syncs with"), "{out}");
    }
    std::fs::write(a.folder.join("docs/a.txt"), "version three, after the move").unwrap();
    std::fs::write(b.folder.join("from-b.txt"), "written on B after the move").unwrap();
    wait_until(T, "both changes on both devices, through PostgreSQL and S3", || {
        on_b("docs/a.txt", b"version three, after the move")
            && std::fs::read(a.folder.join("from-b.txt")).is_ok_and(|g| g == b"written on B after the move")
    })
    .unwrap_or_else(|e| {
        panic!("{e}\n--- A ---\n{}\n--- B ---\n{}\n--- server ---\n{}", a.log(), b.log(), server.log())
    });
    for (name, d) in [("A", &a), ("B", &b)] {
        let log = d.log();
        assert!(!log.contains("listing again"), "{name} listed everything again:\n{log}");
        let names: Vec<String> = std::fs::read_dir(&d.folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert!(!names.iter().any(|n| n.contains("conflicted copy")), "{name}: {names:?}");
    }
    assert_eq!(std::fs::read(b.folder.join("docs/big.bin")).unwrap(), big);
    // The history and the trash came along.
    let history = b.ferry(&["history", "docs/a.txt"]).expect("ferry history");
    assert_eq!(history.lines().filter(|l| l.contains("laptop")).count(), 3, "{history}");
    let trash = b.ferry(&["trash"]).expect("ferry trash");
    assert!(trash.contains("old.txt"), "{trash}");
}
