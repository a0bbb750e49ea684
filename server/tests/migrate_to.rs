//! `ferry-server migrate-to`, with the real binary: a single-node server
//! (SQLite and a block folder) filled through the HTTP API, copied into a
//! PostgreSQL database of a throwaway cluster and an s3s-fs bucket, and
//! served from there with the same master key. Skipped without PostgreSQL
//! or s3s-fs (failing under CI=true, see `ferry_server::testing`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use ferry_server::testing::{PgCluster, s3s_fs, skip};
use ferry_shared::BlockId;
use ferry_shared::block::{BlockEncoding, write_frame};
use serde_json::{Value, json};

const PASSWORD: &str = "long-password";

fn ferry(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry-server"))
        .args(args)
        .envs(env.iter().copied())
        .env("AWS_ACCESS_KEY_ID", s3s_fs::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", s3s_fs::SECRET_KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn add_user(name: &str, store: &[&str]) {
    let mut args = vec!["user", "add", name, "--password-stdin"];
    args.extend_from_slice(store);
    ok(ferry(&args, &format!("{PASSWORD}\n"), &[]));
}

/// `ferry-server serve` on a free port, killed on drop.
struct Serving {
    child: std::process::Child,
    addr: String,
}

impl Serving {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Serving {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferry-server"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .env("AWS_ACCESS_KEY_ID", s3s_fs::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", s3s_fs::SECRET_KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let _ = tx.send(std::io::BufReader::new(stdout).lines().next());
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(Ok(line))) => Serving { child, addr: line.rsplit("://").next().unwrap().to_owned() },
            _ => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!("ferry-server did not start: {}", String::from_utf8_lossy(&out.stderr));
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

/// One HTTP/1.1 request on a new connection: status and body.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, Vec<u8>) {
    http_with(addr, method, path, token, &[], body)
}

fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    use std::io::Read;
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if let Some(t) = token {
        req += &format!("Authorization: Bearer {t}\r\n");
    }
    if body.first() == Some(&b'{') {
        req += "Content-Type: application/json\r\n";
    }
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
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(&resp[end..])
    } else {
        resp[end..].to_vec()
    };
    (status, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").expect("a chunk size");
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().split(';').next().unwrap(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

/// A request that must answer `want`; its body as JSON (null when empty).
fn json_ok(addr: &str, method: &str, path: &str, token: &str, body: &[u8], want: u16) -> Value {
    let (status, body) = http(addr, method, path, Some(token), body);
    assert_eq!(status, want, "{method} {path}: {}", String::from_utf8_lossy(&body));
    if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap() }
}

fn login(addr: &str, user: &str, device: &str) -> String {
    let body = json!({"username": user, "password": PASSWORD, "device_name": device}).to_string();
    let (status, body) = http(addr, "POST", "/auth/login", None, body.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice::<Value>(&body).unwrap()["token"].as_str().unwrap().to_owned()
}

/// A whole file through the file API (chunked, sealed and packed by the server).
fn upload(addr: &str, token: &str, path: &str, bytes: &[u8]) -> Value {
    let (status, body) = http(addr, "POST", &format!("/files/upload?uploadType=media&path={path}"), Some(token), bytes);
    assert!(status == 200 || status == 201, "{path}: {status} {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn download(addr: &str, token: &str, path: &str, rev: Option<i64>) -> Vec<u8> {
    let q = rev.map(|r| format!("&rev={r}")).unwrap_or_default();
    let (status, body) = http(addr, "GET", &format!("/files/download?path={path}{q}"), Some(token), b"");
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    body
}

/// Every change after `cursor`: the changes and the new cursor.
fn changes(addr: &str, token: &str, mut cursor: i64) -> (Vec<Value>, i64) {
    let mut all = Vec::new();
    loop {
        let page = json_ok(addr, "GET", &format!("/changes?cursor={cursor}&limit=5000"), token, b"", 200);
        all.extend(page["changes"].as_array().unwrap().iter().cloned());
        cursor = page["cursor"].as_i64().unwrap();
        if !page["has_more"].as_bool().unwrap() {
            return (all, cursor);
        }
    }
}

/// Bytes that look random, the same for the same seed.
fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new().update(seed.as_bytes()).finalize_xof().fill(&mut out);
    out
}

/// Every file under `dir` (the SQLite shared-memory index aside, which
/// readers may rewrite) and the BLAKE3 of its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.to_string_lossy().ends_with("-shm") {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_owned(),
                    blake3::hash(&std::fs::read(&p).unwrap()).to_hex().to_string(),
                );
            }
        }
    }
    out
}

fn users_in(db: &str) -> String {
    ok(ferry(&["user", "list", "--db", db], "", &[]))
}

/// The whole way: fill a single-node server, copy it, serve the copy.
#[test]
fn migrate_to_postgres_and_s3_keeps_tokens_cursors_and_files() {
    let test = "migrate_to::migrate_to_postgres_and_s3_keeps_tokens_cursors_and_files";
    let Some(cluster) = PgCluster::shared().unwrap() else {
        return skip(test, "no PostgreSQL binaries (initdb, pg_ctl)");
    };
    let Some(s3) = s3s_fs::S3sFs::shared(test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("single");
    let data_s = data.to_str().unwrap();
    add_user("alice", &["--data", data_s]);
    add_user("bob", &["--data", data_s]);

    // ---- A single-node server with some life in it ----
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let (alice, bob, alice_cursor, bob_cursor, link, share_path, a_revs);
    {
        let server = Serving::start(&["--data", data_s], &[]);
        let addr = server.addr.as_str();
        alice = login(addr, "alice", "laptop");
        bob = login(addr, "bob", "phone");
        // Several versions of one file.
        let mut revs = Vec::new();
        for v in ["version one", "version two, longer", "version three, the head"] {
            revs.push(upload(addr, &alice, "docs/a.txt", v.as_bytes())["rev"].as_i64().unwrap());
        }
        a_revs = revs;
        files.insert("docs/a.txt".into(), b"version three, the head".to_vec());
        // A file of several blocks (one pack), and one deleted (the trash).
        let big = noise("big", 3 << 20);
        upload(addr, &alice, "docs/big.bin", &big);
        files.insert("docs/big.bin".into(), big);
        upload(addr, &alice, "docs/old.txt", b"soon in the trash");
        json_ok(addr, "POST", "/files/delete", &alice, br#"{"path":"docs/old.txt"}"#, 204);
        // Small files whose blocks share one pack, as a client uploads them.
        let mut frames = Vec::new();
        let mut ops = Vec::new();
        for i in 0..12 {
            let bytes = format!("small file {i}: {}", "x".repeat(i * 10)).into_bytes();
            let id = BlockId::of(&bytes);
            write_frame(&mut frames, &id, BlockEncoding::Raw, &bytes);
            let path = format!("many/f{i:02}.txt");
            ops.push(json!({"op": "put", "path": path, "parent_rev": null, "size": bytes.len(), "mtime": 1,
                            "blocks": {"full": [id.to_hex()]}}));
            files.insert(path, bytes);
        }
        json_ok(addr, "POST", "/blocks/batch", &alice, &frames, 201);
        // And a block stored on its own.
        let loose = b"a block stored on its own".to_vec();
        let id = BlockId::of(&loose);
        let raw = [("ferry-block-encoding", "raw")];
        let (status, body) = http_with(addr, "PUT", &format!("/blocks/{}", id.to_hex()), Some(&alice), &raw, &loose);
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
        ops.push(json!({"op": "put", "path": "loose.txt", "parent_rev": null, "size": loose.len(), "mtime": 1,
                        "blocks": {"full": [id.to_hex()]}}));
        files.insert("loose.txt".into(), loose);
        let done = json_ok(addr, "POST", "/commit", &alice, json!({"ops": ops}).to_string().as_bytes(), 200);
        for r in done["results"].as_array().unwrap() {
            assert_eq!(r["status"], 200, "{done}");
        }
        // A folder shared with bob, who adds to it; a link to a file.
        upload(addr, &alice, "shared/plan.txt", b"the plan");
        files.insert("shared/plan.txt".into(), b"the plan".to_vec());
        let share = br#"{"path":"shared","with":"bob","role":"editor"}"#;
        json_ok(addr, "POST", "/shares", &alice, share, 201);
        let shares = json_ok(addr, "GET", "/shares", &bob, b"", 200);
        share_path = shares["shares"][0]["path"].as_str().unwrap().to_owned();
        upload(addr, &bob, &format!("{share_path}/from-bob.txt"), b"bob was here");
        files.insert("shared/from-bob.txt".into(), b"bob was here".to_vec());
        let l = json_ok(addr, "POST", "/links", &alice, br#"{"path":"docs/a.txt"}"#, 201);
        let url = l["url"].as_str().unwrap();
        link = url[url.find("/l/").unwrap()..].to_owned();
        alice_cursor = changes(addr, &alice, 0).1;
        bob_cursor = changes(addr, &bob, 0).1;
        assert!(alice_cursor > 10, "{alice_cursor}");
        // Stopped hard: what it committed is in the WAL, not yet in ferry.db.
    }
    assert!(data.join("blocks/packs").is_dir());
    let before = snapshot(&data);

    let db = cluster.fresh_db().unwrap();
    let prefix = format!("migrated-{}", std::process::id());
    let blocks = format!("s3://{}?endpoint={}&region=us-east-1&prefix={prefix}", s3s_fs::BUCKET, s3.endpoint);

    // ---- A failure half-way leaves the target empty ----
    let damaged = dir.path().join("damaged");
    ok(Command::new("cp").arg("-a").arg(&data).arg(&damaged).output().unwrap());
    let pack = std::fs::read_dir(damaged.join("blocks/packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&pack, bytes).unwrap();
    let out = ferry(&["migrate-to", "--data", damaged.to_str().unwrap(), "--db", &db, "--blocks", &blocks], "", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a damaged source was migrated: {err}");
    assert!(err.contains("damaged"), "{err}");
    eprintln!("{err}");
    assert_eq!(users_in(&db), "", "a failed migration left users behind");

    // ---- The migration ----
    let out = ferry(&["migrate-to", "--data", data_s, "--db", &db, "--blocks", &blocks], "", &[]);
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let said = ok(out);
    eprintln!("{said}");
    assert!(said.contains("migrated 2 users"), "{said}");
    assert_eq!(snapshot(&data), before, "the source changed");
    assert!(users_in(&db).contains("alice"));

    // Twice: refused, nothing changed.
    let again = ferry(&["migrate-to", "--data", data_s, "--db", &db, "--blocks", &blocks], "", &[]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("not empty") && err.contains("2 users"), "{err}");

    // ---- Served from PostgreSQL and S3, the same master key ----
    let key = std::fs::read_to_string(data.join("master.key")).unwrap();
    let new_data = dir.path().join("node");
    let server = Serving::start(
        &["--data", new_data.to_str().unwrap(), "--db", &db, "--blocks", &blocks],
        &[("FERRY_MASTER_KEY", key.trim())],
    );
    let addr = server.addr.as_str();
    // The same tokens; nothing new since the old cursors.
    json_ok(addr, "GET", "/account", &alice, b"", 200);
    let (news, cursor) = changes(addr, &alice, alice_cursor);
    assert!(news.is_empty() && cursor == alice_cursor, "{news:?} {cursor}");
    let (news, cursor) = changes(addr, &bob, bob_cursor);
    assert!(news.is_empty() && cursor == bob_cursor, "{news:?} {cursor}");
    // Every file, byte for byte; history, trash, shares and links.
    for (path, bytes) in &files {
        assert!(download(addr, &alice, path, None) == *bytes, "{path} differs");
    }
    assert_eq!(download(addr, &alice, "docs/a.txt", Some(a_revs[0])), b"version one");
    let revs = json_ok(addr, "GET", "/files/list_revisions?path=docs/a.txt", &alice, b"", 200);
    assert_eq!(revs["revisions"].as_array().unwrap().len(), 3, "{revs}");
    let trash = json_ok(addr, "GET", "/trash", &alice, b"", 200);
    assert!(trash["items"].as_array().unwrap().iter().any(|i| i["path"] == "docs/old.txt"), "{trash}");
    let shares = json_ok(addr, "GET", "/shares", &alice, b"", 200);
    assert_eq!(shares["shares"][0]["members"].as_array().unwrap().len(), 2, "{shares}");
    assert_eq!(download(addr, &bob, &format!("{share_path}/plan.txt"), None), b"the plan");
    let links = json_ok(addr, "GET", "/links", &alice, b"", 200);
    assert_eq!(links["links"].as_array().unwrap().len(), 1, "{links}");
    let (status, body) = http(addr, "GET", &link, None, b"");
    assert_eq!((status, body), (200, b"version three, the head".to_vec()));
    // A new commit continues the journal where it was.
    upload(addr, &alice, "after.txt", b"written after the move");
    let (news, cursor) = changes(addr, &alice, alice_cursor);
    assert_eq!(news.len(), 1, "{news:?}");
    assert_eq!(news[0]["seq"].as_i64(), Some(alice_cursor + 1));
    assert_eq!(cursor, alice_cursor + 1);
    // A new login gets a new device id, after the copied ones.
    let tablet = login(addr, "bob", "tablet");
    json_ok(addr, "GET", "/account", &tablet, b"", 200);
    // The blocks are in the bucket, not in the new node's folder.
    assert!(!new_data.join("blocks").exists());
    assert!(s3.root.join(s3s_fs::BUCKET).join(&prefix).join("packs").is_dir());
}

/// Refusals: a target that holds data, a second run, a source of another
/// schema version; and a folder as the target block store.
#[test]
fn migrate_to_refuses_a_target_that_is_not_empty() {
    let test = "migrate_to::migrate_to_refuses_a_target_that_is_not_empty";
    let Some(cluster) = PgCluster::shared().unwrap() else {
        return skip(test, "no PostgreSQL binaries (initdb, pg_ctl)");
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("single");
    let data_s = data.to_str().unwrap();
    add_user("carol", &["--data", data_s]);
    let key = [("FERRY_MASTER_KEY", "11".repeat(32))];
    let key: Vec<(&str, &str)> = key.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let target_blocks = dir.path().join("target-blocks");
    let migrate = |db: &str| {
        ferry(&["migrate-to", "--data", data_s, "--db", db, "--blocks", target_blocks.to_str().unwrap()], "", &key)
    };

    // A database someone already uses.
    let used = cluster.fresh_db().unwrap();
    add_user("dave", &["--db", used.as_str()]);
    let out = migrate(&used);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not empty") && err.contains("1 users"), "{err}");
    let users = users_in(&used);
    assert!(users.contains("dave") && !users.contains("carol"), "{users}");

    // An empty one, then the same again.
    let db = cluster.fresh_db().unwrap();
    let said = ok(migrate(&db));
    assert!(said.contains("migrated 1 users"), "{said}");
    let again = migrate(&db);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    assert!(users_in(&db).contains("carol"));

    // A source written by a newer ferry-server.
    let newer = dir.path().join("newer");
    std::fs::create_dir_all(&newer).unwrap();
    std::fs::copy(data.join("ferry.db"), newer.join("ferry.db")).unwrap();
    rusqlite::Connection::open(newer.join("ferry.db")).unwrap().execute_batch("PRAGMA user_version = 999").unwrap();
    let out = ferry(
        &[
            "migrate-to",
            "--data",
            newer.to_str().unwrap(),
            "--db",
            &cluster.fresh_db().unwrap(),
            "--blocks",
            target_blocks.to_str().unwrap(),
        ],
        "",
        &key,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("newer than this ferry-server"));
}

/// A larger source, for figures (`cargo test -p ferry-server --test
/// migrate_to -- --ignored --nocapture`): many small files, one large one.
#[test]
#[ignore]
fn migrate_to_a_larger_server() {
    let test = "migrate_to::migrate_to_a_larger_server";
    let Some(cluster) = PgCluster::shared().unwrap() else {
        return skip(test, "no PostgreSQL binaries (initdb, pg_ctl)");
    };
    let Some(s3) = s3s_fs::S3sFs::shared(test) else { return };
    let n_small: usize = std::env::var("FERRY_MIGRATE_SMALL").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let big_mib: usize = std::env::var("FERRY_MIGRATE_BIG_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("single");
    let data_s = data.to_str().unwrap();
    add_user("alice", &["--data", data_s]);
    {
        let server = Serving::start(&["--data", data_s], &[]);
        let addr = server.addr.as_str();
        let alice = login(addr, "alice", "laptop");
        upload(addr, &alice, "big.bin", &noise("big", big_mib << 20));
        for start in (0..n_small).step_by(4000) {
            let mut frames = Vec::new();
            let mut ops = Vec::new();
            for i in start..(start + 4000).min(n_small) {
                let bytes = noise(&format!("small {i}"), 1024);
                let id = BlockId::of(&bytes);
                write_frame(&mut frames, &id, BlockEncoding::Raw, &bytes);
                ops.push(json!({"op": "put", "path": format!("small/{}/f{i}", i / 1000), "parent_rev": null,
                                "size": bytes.len(), "mtime": 1, "blocks": {"full": [id.to_hex()]}}));
            }
            json_ok(addr, "POST", "/blocks/batch", &alice, &frames, 201);
            json_ok(addr, "POST", "/commit", &alice, json!({"ops": ops}).to_string().as_bytes(), 200);
        }
    }
    let db = cluster.fresh_db().unwrap();
    let blocks = format!(
        "s3://{}?endpoint={}&region=us-east-1&prefix=large-{}",
        s3s_fs::BUCKET,
        s3.endpoint,
        std::process::id()
    );
    // With its peak memory where GNU time is installed.
    let mut cmd = match Path::new("/usr/bin/time").is_file() {
        true => {
            let mut c = Command::new("/usr/bin/time");
            c.arg("-v").arg(env!("CARGO_BIN_EXE_ferry-server"));
            c
        }
        false => Command::new(env!("CARGO_BIN_EXE_ferry-server")),
    };
    let out = cmd
        .args(["migrate-to", "--data", data_s, "--db", &db, "--blocks", &blocks])
        .env("AWS_ACCESS_KEY_ID", s3s_fs::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", s3s_fs::SECRET_KEY)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    println!("{}", ok(out));
}
