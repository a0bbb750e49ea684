//! Server lifecycle over real processes: HTTPS with rustls, graceful shutdown
//! releasing long polls.

use std::process::Command;
use std::time::Duration;

use ferry_tests::{Client, Server, add_user};

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
        eprintln!("openssl is not available; skipping the HTTPS test");
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
