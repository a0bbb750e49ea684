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

use ferry_server::testing::s3s_fs;

/// `ferry-server serve` with `--blocks` (and the test credentials in the
/// environment), killed on drop.
struct Serving {
    child: std::process::Child,
    addr: String,
}

impl Serving {
    fn start(data: &std::path::Path, blocks: &str) -> Result<Serving, String> {
        Self::start_with(data, blocks, &[])
    }

    /// [`Serving::start`] with more arguments to `serve`.
    fn start_with(data: &std::path::Path, blocks: &str, more: &[&str]) -> Result<Serving, String> {
        let mut command = serve_command(data, blocks);
        command.args(more);
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let line = std::io::BufReader::new(stdout).lines().next();
            let _ = tx.send(line);
        });
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(Some(Ok(line))) => {
                let addr = line.rsplit("://").next().unwrap().to_owned();
                Ok(Serving { child, addr })
            }
            _ => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                Err(String::from_utf8_lossy(&out.stderr).into_owned())
            }
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_command(data: &std::path::Path, blocks: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry-server"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--blocks", blocks, "--data"])
        .arg(data)
        .env("AWS_ACCESS_KEY_ID", s3s_fs::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", s3s_fs::SECRET_KEY)
        .stdin(Stdio::null());
    cmd
}

/// One HTTP/1.1 request on a new connection: status, head, body.
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, Vec<u8>) {
    use std::io::Read;
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    conn.write_all(req.as_bytes()).unwrap();
    conn.write_all(body).unwrap();
    let mut resp = Vec::new();
    conn.read_to_end(&mut resp).unwrap();
    let end = resp.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let head = String::from_utf8_lossy(&resp[..end]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    (status, head, resp[end..].to_vec())
}

#[test]
fn serve_refuses_a_bad_blocks_spec() {
    let dir = tempfile::tempdir().unwrap();
    for (spec, says) in [("s3://Not_A_Bucket", "no bucket name"), ("ftp://host/x", "unsupported block storage")] {
        let out = serve_command(dir.path(), spec).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{spec}: {err}");
    }
}

/// A bucket nobody answers for stops start-up in seconds, saying why.
#[test]
fn serve_stops_at_once_when_the_bucket_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let spec = format!("s3://ferry-test?endpoint=http://127.0.0.1:{}", s3s_fs::free_port());
    let started = std::time::Instant::now();
    let err = match Serving::start(dir.path(), &spec) {
        Ok(s) => panic!("serving on {} with an unreachable bucket", s.addr),
        Err(err) => err,
    };
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(err.contains("block storage s3://ferry-test") && err.contains("is not usable"), "{err}");
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
}

/// Blocks go to the bucket (not to DATA/blocks) with the credentials of
/// the environment, and come back; when the bucket goes away, reads are a
/// 503 the client retries, not a missing block. (Without the node's
/// memory of recent blocks, which would still answer this one.)
#[test]
fn blocks_in_a_bucket_through_the_api() {
    let Some(mut s3) = s3s_fs::S3sFs::start("cli::blocks_in_a_bucket_through_the_api") else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = run(&["user", "add", "carol", "--password-stdin", "--data", data.to_str().unwrap()], "long-password\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let spec = format!("s3://{}?endpoint={}&region=us-east-1&prefix=ferry", s3s_fs::BUCKET, s3.endpoint);
    let server = Serving::start_with(&data, &spec, &["--block-cache-mib", "0"])
        .unwrap_or_else(|e| panic!("ferry-server did not start: {e}"));

    let login = br#"{"username":"carol","password":"long-password","device_name":"test"}"#;
    let (status, _, body) = http(&server.addr, "POST", "/auth/login", &[("Content-Type", "application/json")], login);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let token: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let auth = format!("Bearer {}", token["token"].as_str().unwrap());
    let block = b"a block that lives in a bucket".to_vec();
    let hex = ferry_shared::BlockId::of(&block).to_hex();
    let path = format!("/blocks/{hex}");
    let headers = [("Authorization", auth.as_str()), ("ferry-block-encoding", "raw")];
    let (status, _, body) = http(&server.addr, "PUT", &path, &headers, &block);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let object = s3.root.join(s3s_fs::BUCKET).join("ferry/blocks").join(&hex[..2]).join(&hex[2..4]).join(&hex);
    assert!(object.is_file(), "{} is missing", object.display());
    assert!(!data.join("blocks").exists(), "blocks went to the data folder too");
    let (status, _, body) = http(&server.addr, "GET", &path, &headers, b"");
    assert_eq!((status, body), (200, block));

    s3.kill();
    let (status, head, body) = http(&server.addr, "GET", &path, &headers, b"");
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(head.to_ascii_lowercase().contains("retry-after: 5"), "{head}");
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(error["error"]["code"], "unavailable", "{error}");
}
