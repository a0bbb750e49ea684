//! [`S3BlockStore`] against a real S3 server (s3s-fs, see [`s3s_fs`]) and
//! against endpoints that fail: refused connections, a server that never
//! answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use ferry_shared::BlockId;
use ferry_shared::block::BlockEncoding;

use super::{Limits, S3BlockStore, S3Spec};
use crate::blocks::{BlockLoc, BlockStore, Object, conformance};
use crate::error::Error;
use crate::stores::{Incoming, Stores};

use crate::testing::s3s_fs::{self, S3sFs};

fn credentials() -> AmazonS3Builder {
    AmazonS3Builder::new().with_access_key_id(s3s_fs::ACCESS_KEY).with_secret_access_key(s3s_fs::SECRET_KEY)
}

fn spec(endpoint: &str, prefix: Option<&str>) -> S3Spec {
    S3Spec {
        bucket: s3s_fs::BUCKET.to_owned(),
        endpoint: Some(endpoint.to_owned()),
        region: Some("us-east-1".to_owned()),
        prefix: prefix.map(str::to_owned),
    }
}

fn store_on(endpoint: &str, prefix: Option<&str>, limits: Limits) -> S3BlockStore {
    S3BlockStore::new(credentials(), &spec(endpoint, prefix), limits).unwrap()
}

#[tokio::test]
async fn conformance_on_s3s_fs() {
    let Some(s3) = S3sFs::start("blocks::s3::conformance_on_s3s_fs") else { return };
    let store = store_on(&s3.endpoint, None, Limits::default());
    store.check().await.unwrap();
    conformance::check(&store).await;
}

/// Under a prefix, among objects that are not the store's (outside the
/// prefix, other names inside it): the store sees only its own, laid out
/// as the folder store lays out its files.
#[tokio::test]
async fn under_a_prefix_the_layout_of_the_folder_store() {
    let Some(s3) = S3sFs::start("blocks::s3::under_a_prefix_the_layout_of_the_folder_store") else { return };
    let raw = store_on(&s3.endpoint, None, Limits::default()).store;
    let stray = BlockId::of(b"in the wrong folder");
    let foreign = [
        "elsewhere/blocks/ab/cd/0000".to_owned(),
        "ferry/a/note.txt".to_owned(),
        "ferry/a/blocks/readme.txt".to_owned(),
        "ferry/a/packs/12.pack".to_owned(),
        "ferry/a/packs/000000000000000g.pack".to_owned(),
        format!("ferry/a/blocks/00/00/{}", stray.to_hex()),
    ];
    for p in &foreign {
        raw.put(&Path::from(p.as_str()), PutPayload::from_static(b"not a block")).await.unwrap();
    }
    let store = store_on(&s3.endpoint, Some("ferry/a"), Limits::default());
    conformance::check(&store).await;

    // Where the objects are (s3s-fs keeps each object as a file).
    let bucket = s3.root.join(s3s_fs::BUCKET);
    let id = BlockId::of(b"laid out");
    store.put(id, b"first seal".to_vec()).await.unwrap();
    let hex = id.to_hex();
    let file = bucket.join("ferry/a/blocks").join(&hex[..2]).join(&hex[2..4]).join(&hex);
    assert_eq!(std::fs::read(&file).unwrap(), b"first seal");
    let locs = store.put_pack(vec![b"one".to_vec(), b"two!".to_vec()]).await.unwrap();
    let BlockLoc::Packed { pack, .. } = locs[0] else { panic!("{locs:?}") };
    assert_eq!(locs[1], BlockLoc::Packed { pack, offset: 3, len: 4 });
    let file = bucket.join("ferry/a/packs").join(format!("{pack:016x}.pack"));
    assert_eq!(std::fs::read(&file).unwrap(), b"onetwo!");

    // Created, never replaced: a second put of the id keeps the first object.
    store.put(id, b"other seal".to_vec()).await.unwrap();
    assert_eq!(store.get(id, BlockLoc::Loose).await.unwrap().unwrap(), b"first seal");

    // A range past the end of a pack is an error, not a short block.
    let past = BlockLoc::Packed { pack, offset: 5, len: 10 };
    assert!(store.get(id, past).await.is_err());

    // The foreign objects are untouched.
    for p in &foreign {
        assert_eq!(raw.get(&Path::from(p.as_str())).await.unwrap().bytes().await.unwrap(), "not a block", "{p}");
    }
}

#[tokio::test]
async fn a_missing_bucket_or_a_wrong_key_fails_the_check() {
    let Some(s3) = S3sFs::start("blocks::s3::a_missing_bucket_or_a_wrong_key_fails_the_check") else { return };
    let missing = S3Spec { bucket: "no-such-bucket".to_owned(), ..spec(&s3.endpoint, None) };
    let store = S3BlockStore::new(credentials(), &missing, Limits::default()).unwrap();
    let err = store.check().await.unwrap_err();
    assert!(err.to_string().contains("s3://no-such-bucket/"), "{err}");
    eprintln!("a missing bucket: {err}");

    let wrong = AmazonS3Builder::new().with_access_key_id(s3s_fs::ACCESS_KEY).with_secret_access_key("wrong");
    let store = S3BlockStore::new(wrong, &spec(&s3.endpoint, None), Limits::default()).unwrap();
    let err = store.check().await.unwrap_err();
    assert!(err.to_string().contains("s3://ferry-test/"), "{err}");
    eprintln!("a wrong key: {err}");
    // Every call fails the same way: an error, never "not stored".
    assert!(store.get(BlockId::of(b"x"), BlockLoc::Loose).await.is_err());
}

/// Every call against a port where nobody listens is an error within
/// seconds (object_store's defaults would retry for minutes), and a read
/// is an error, not "not stored".
#[tokio::test]
async fn an_unreachable_endpoint_is_an_error_within_seconds() {
    let store = store_on(&format!("http://127.0.0.1:{}", s3s_fs::free_port()), None, Limits::default());
    let id = BlockId::of(b"x");
    let packed = BlockLoc::Packed { pack: 7, offset: 0, len: 1 };
    fails_quickly("check", store.check()).await;
    fails_quickly("get", store.get(id, BlockLoc::Loose)).await;
    fails_quickly("ranged get", store.get(id, packed)).await;
    fails_quickly("put", store.put(id, vec![1])).await;
    fails_quickly("put_pack", store.put_pack(vec![vec![1], vec![2]])).await;
    fails_quickly("delete", store.delete(Object::Loose(id))).await;
    fails_quickly("list", async { store.list().next().await.expect("an error, not an empty list") }).await;
}

/// `op` fails, within 10 s.
async fn fails_quickly<T: std::fmt::Debug>(what: &str, op: impl Future<Output = std::io::Result<T>>) {
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(30), op)
        .await
        .unwrap_or_else(|_| panic!("{what} still waiting after 30 s"));
    let took = started.elapsed();
    match r {
        Ok(v) => panic!("{what} succeeded: {v:?}"),
        Err(e) => eprintln!("{what}: {e} after {took:?}"),
    }
    assert!(took < Duration::from_secs(10), "{what} took {took:?}");
}

/// An endpoint that fails the way an outage does, counting what reaches it.
struct Failing {
    endpoint: String,
    /// Connections accepted (each request comes on a new one: a silent
    /// endpoint's requests time out, a 503 closes its connection).
    connections: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl Failing {
    /// `silent`: connections are held and never answered; else each
    /// request is answered `503 Service Unavailable`.
    async fn start(silent: bool) -> Failing {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                match silent {
                    true => held.push(conn),
                    false => drop(tokio::spawn(answer_503(conn))),
                }
            }
        });
        Failing { endpoint, connections, _task: task }
    }

    fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Reads one request (head and `Content-Length` body, at most 1 MiB) and
/// answers 503.
async fn answer_503(mut conn: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut chunk).await {
            Ok(n) if n > 0 && buf.len() < 1 << 20 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
        .min(1 << 20);
    while buf.len() < head_end + len {
        match conn.read(&mut chunk).await {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
    let _ = conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
    let _ = conn.shutdown().await;
}

/// A store answering 503 (S3 down or throttling) is tried 4 times (3
/// retries), then an error; object_store's defaults try 11 times over up
/// to 3 minutes.
#[tokio::test]
async fn a_failing_endpoint_is_retried_three_times() {
    let failing = Failing::start(false).await;
    let store = store_on(&failing.endpoint, None, Limits::default());
    fails_quickly("get", store.get(BlockId::of(b"x"), BlockLoc::Loose)).await;
    assert_eq!(failing.count(), 4);
    fails_quickly("put", store.put(BlockId::of(b"x"), vec![1; 1000])).await;
    assert_eq!(failing.count(), 8);
}

/// A server that accepts connections and never answers: each try ends at
/// the request timeout (shortened here; 30 s by default). A read is tried
/// again while the retry window (10 s) lasts, a write is not (it may have
/// landed; the client sends it again).
#[tokio::test]
async fn a_silent_endpoint_times_out() {
    let silent = Failing::start(true).await;
    let limits = Limits { request_timeout: Duration::from_secs(1), ..Limits::default() };
    let store = store_on(&silent.endpoint, None, limits);
    fails_quickly("get", store.get(BlockId::of(b"x"), BlockLoc::Loose)).await;
    assert_eq!(silent.count(), 4);
    fails_quickly("put", store.put(BlockId::of(b"x"), vec![1])).await;
    assert_eq!(silent.count(), 5);
}

/// Through the domain layer: a block store that fails makes a 503 with
/// `Retry-After`, for reads and writes alike, never a 404 or a 500.
#[tokio::test]
async fn a_bucket_outage_is_a_503() {
    let Some(mut s3) = S3sFs::start("blocks::s3::a_bucket_outage_is_a_503") else { return };
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(crate::meta::sqlite::SqliteStore::open(&dir.path().join("ferry.db")).unwrap());
    let user = crate::meta::Accounts::add_user(&*meta, "alice", "not a hash", 1 << 30).unwrap();
    let stores = Arc::new(Stores {
        meta,
        blocks: Arc::new(store_on(&s3.endpoint, None, Limits::default())),
        vault: crate::crypto::Vault::from_key([7; 32]),
        notifier: Arc::new(crate::notify::LocalNotifier::default()),
    });
    let plain = b"a block of alice's".to_vec();
    let id = BlockId::of(&plain);
    stores.store_blocks(user, Incoming::One(id, BlockEncoding::Raw, plain.clone().into())).await.unwrap();
    assert_eq!(stores.read_block(id, BlockLoc::Loose).await.unwrap(), (BlockEncoding::Raw, plain));

    s3.kill();
    let unavailable = |e: Error| {
        assert!(matches!(e, Error::Storage(_)), "{e:?}");
        let resp = e.into_response();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()[axum::http::header::RETRY_AFTER], "5");
    };
    unavailable(stores.read_block(id, BlockLoc::Loose).await.unwrap_err());
    let other = b"another block".to_vec();
    let incoming = Incoming::One(BlockId::of(&other), BlockEncoding::Raw, other.into());
    unavailable(stores.store_blocks(user, incoming).await.unwrap_err());
}

/// S3 answers a GET in a bucket that is gone with 404 `NoSuchBucket`: an
/// error, not a missing block (s3s-fs answers `NoSuchKey`, so this is
/// checked on the error S3's answer makes).
#[test]
fn a_missing_bucket_is_no_missing_object() {
    let not_found = |code: &str| object_store::Error::NotFound {
        path: "blocks/ab/cd/abcd".into(),
        source: format!("Server returned non-2xx status code: 404 Not Found: <Error><Code>{code}</Code></Error>")
            .into(),
    };
    assert!(super::is_missing_object(&not_found("NoSuchKey")));
    assert!(!super::is_missing_object(&not_found("NoSuchBucket")));
    assert!(!super::is_missing_object(&object_store::Error::Generic { store: "S3", source: "timed out".into() }));
}

#[test]
fn specs() {
    let s = S3Spec::parse("s3://ferry-blocks").unwrap();
    assert_eq!(s, S3Spec { bucket: "ferry-blocks".into(), endpoint: None, region: None, prefix: None });
    let s = S3Spec::parse("s3://b.example?endpoint=http://127.0.0.1:9000&region=eu-west-1&prefix=%2Fferry%2Fprod%2F")
        .unwrap();
    assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(s.region.as_deref(), Some("eu-west-1"));
    assert_eq!(s.prefix.as_deref(), Some("ferry/prod"));
    for (bad, says) in [
        ("s3://", "no bucket name"),
        ("s3://Upper", "no bucket name"),
        ("s3://bucket/folder", "no bucket name"),
        ("s3://bucket?endpoint=127.0.0.1:9000", "must start with http:// or https://"),
        ("s3://bucket?region=a&region=b", "given twice"),
        ("s3://bucket?secret=x", "unknown setting"),
        ("s3://bucket?region=", "has no value"),
        ("s3://bucket?prefix=a//b", "prefix"),
        ("s3://bucket?prefix=../up", "prefix"),
        ("gs://bucket", "no S3 location"),
    ] {
        let e = S3Spec::parse(bad).unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
}

#[test]
fn objects_are_read_back_from_their_paths() {
    let id = BlockId::of(b"x");
    let hex = id.to_hex();
    let at = |root: &str, p: String| S3BlockStore::object_at(root, &Path::from(p));
    assert_eq!(at("", format!("blocks/{}/{}/{hex}", &hex[..2], &hex[2..4])), Some(Object::Loose(id)));
    assert_eq!(at("p/q/", format!("p/q/blocks/{}/{}/{hex}", &hex[..2], &hex[2..4])), Some(Object::Loose(id)));
    assert_eq!(at("p/q/", format!("blocks/{}/{}/{hex}", &hex[..2], &hex[2..4])), None);
    assert_eq!(at("", format!("blocks/{}/{hex}", &hex[..2])), None);
    assert_eq!(at("", "packs/00000000000000ff.pack".into()), Some(Object::Pack(255)));
    assert_eq!(at("", "packs/ff.pack".into()), None);
    assert_eq!(at("", "packs/00000000000000ff.pack.tmp".into()), None);
}
