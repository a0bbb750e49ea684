//! Read-only share links against the real server, opened as a stranger
//! would (no token, no cookie): files with ranges and validators, a folder's
//! page and its zip, passwords, expiry, revocation, and nothing outside the
//! linked item; and `ferry link` / `links` / `unlink` on a real device.

use std::io::Read;

use anyhow::Context;
use std::time::Duration;

use ferry_shared::api::{CommitOp, Link, LinkList};
use ferry_tests::{Client, Daemon, Server, pseudo_random, wait_until};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RANGE, SET_COOKIE};
use serde_json::json;

type TestResult = anyhow::Result<()>;

async fn link(c: &Client, body: serde_json::Value) -> anyhow::Result<Link> {
    let resp = c.post("/links").json(&body).send().await?;
    anyhow::ensure!(resp.status() == StatusCode::CREATED, "{}: {}", resp.status(), resp.text().await?);
    Ok(resp.json().await?)
}

fn ok_put(r: ferry_shared::api::OpResult) {
    assert!(r.entry.is_some(), "{:?}", r.error);
}

fn stranger() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_link_downloads_with_ranges_and_validators() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let data = pseudo_random(300_000, 1);
    ok_put(alice.put_small("docs/report.pdf", &data, None).await?);
    let l = link(&alice, json!({"path": "docs/report.pdf"})).await?;
    assert!(l.url.starts_with(&format!("{}/l/", server.url)), "{}", l.url);
    let token = l.url.rsplit('/').next().unwrap_or_default();
    assert!(token.len() >= 22, "at least 128 random bits: {token}");
    let web = stranger();

    let resp = web.get(&l.url).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let disposition = resp.headers()[CONTENT_DISPOSITION].to_str()?.to_owned();
    assert!(disposition.starts_with("attachment;") && disposition.contains("report.pdf"), "{disposition}");
    let etag = resp.headers()[ETAG].to_str()?.to_owned();
    assert_eq!(resp.bytes().await?.to_vec(), data);
    let resp = web.get(&l.url).header(RANGE, "bytes=1000-1999").send().await?;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(resp.bytes().await?.to_vec(), data[1000..2000]);
    assert_eq!(web.get(&l.url).header(IF_NONE_MATCH, &etag).send().await?.status(), StatusCode::NOT_MODIFIED);
    // Nothing under a file link, and nothing beside it.
    assert_eq!(web.get(format!("{}/x", l.url)).send().await?.status(), StatusCode::NOT_FOUND);
    // A guessed token finds nothing, and says nothing.
    let resp = web.get(format!("{}/l/{}", server.url, "A".repeat(43))).send().await?;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // The link follows its file through a move; a deletion ends it.
    let moved = CommitOp::Move {
        from: ferry_shared::RelPath::parse("docs/report.pdf")?,
        to: ferry_shared::RelPath::parse("archive.pdf")?,
        parent_rev: None,
    };
    assert!(alice.commit(vec![moved]).await?.results[0].entry.is_some());
    assert_eq!(web.get(&l.url).send().await?.bytes().await?.to_vec(), data);
    let list: LinkList = alice.get("/links").send().await?.json().await?;
    assert_eq!(list.links[0].path.as_ref().map(|p| p.as_str()), Some("archive.pdf"));
    let delete = CommitOp::Delete { path: ferry_shared::RelPath::parse("archive.pdf")?, parent_rev: None };
    assert!(alice.commit(vec![delete]).await?.results[0].entry.is_some());
    assert_eq!(web.get(&l.url).send().await?.status(), StatusCode::NOT_FOUND);
    let list: LinkList = alice.get("/links").send().await?.json().await?;
    assert!(list.links.is_empty(), "a deleted item's links end: {list:?}");
    // A new file at the same path is not what was shared.
    ok_put(alice.put_small("archive.pdf", b"something else, private", None).await?);
    assert_eq!(web.get(&l.url).send().await?.status(), StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_link_shows_a_page_a_zip_and_nothing_outside() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("shared/a.txt", b"alpha".to_vec()),
        ("shared/<img src=x onerror=alert(1)>.html", b"<script>alert(1)</script>".to_vec()),
        ("shared/sub/deep/b.bin", pseudo_random(200_000, 2)),
        ("secret.txt", b"not linked".to_vec()),
    ];
    for (p, d) in &files {
        ok_put(alice.put_small(p, d, None).await?);
    }
    let l = link(&alice, json!({"path": "shared"})).await?;
    let web = stranger();

    let resp = web.get(&l.url).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()[CONTENT_TYPE].to_str()?.starts_with("text/html"));
    let csp = resp.headers()["content-security-policy"].to_str()?.to_owned();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "{csp}");
    let page = resp.text().await?;
    assert!(page.contains("a.txt") && page.contains("sub/"), "{page}");
    assert!(!page.contains("<img") && page.contains("&lt;img src=x"), "names are escaped: {page}");
    // A file under the folder; an uploaded page is a download, never rendered.
    let resp = web.get(format!("{}/sub/deep/b.bin", l.url)).send().await?;
    assert_eq!(resp.bytes().await?.to_vec(), files[2].1);
    let resp = web.get(format!("{}/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E.html", l.url)).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()[CONTENT_DISPOSITION].to_str()?.starts_with("attachment"));
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    // Nothing there: said without the owner's folders above the link.
    let deep = link(&alice, json!({"path": "shared/sub"})).await?;
    let text = web.get(format!("{}/nope.txt", deep.url)).send().await?.text().await?;
    assert!(text.contains("nope.txt") && !text.contains("shared/"), "{text}");
    // Paths out of the link are refused, however they are spelled.
    for escape in ["..%2Fsecret.txt", "%2E%2E/secret.txt", "sub/..%2F..%2Fsecret.txt", "%2Fsecret.txt"] {
        let resp = web.get(format!("{}/{escape}", l.url)).send().await?;
        assert!(matches!(resp.status().as_u16(), 400 | 404), "{escape}: {}", resp.status());
        assert!(!resp.text().await?.contains("not linked"), "{escape}");
    }

    // The whole folder as a zip.
    let resp = web.get(format!("{}?zip=1", l.url)).send().await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[CONTENT_TYPE], "application/zip");
    let bytes = resp.bytes().await?;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec()))?;
    let mut names: Vec<String> = zip.file_names().map(|n| n.map(|n| n.into_owned())).collect::<Result<_, _>>()?;
    names.sort();
    assert_eq!(names, ["<img src=x onerror=alert(1)>.html", "a.txt", "sub/", "sub/deep/", "sub/deep/b.bin"]);
    let mut got = Vec::new();
    let mut entry = zip.by_name("sub/deep/b.bin")?;
    // put_small records 2023-11-14 22:13:20 UTC; zip keeps even seconds.
    let t = entry.last_modified().context("a modification time")?;
    assert_eq!((t.year(), t.month(), t.day(), t.hour(), t.minute()), (2023, 11, 14, 22, 13));
    entry.read_to_end(&mut got)?;
    drop(entry);
    assert_eq!(got, files[2].1);
    // A sub-folder's zip holds only it.
    let resp = web.get(format!("{}/sub?zip=1", l.url)).send().await?;
    let zip = zip::ZipArchive::new(std::io::Cursor::new(resp.bytes().await?.to_vec()))?;
    assert_eq!(zip.len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_expiry_and_revocation() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "dev1").await?;
    let bob = Client::user(&server, "bob", "dev1").await?;
    ok_put(alice.put_small("f.txt", b"guarded", None).await?);
    let l = link(&alice, json!({"path": "f.txt", "password": "correct horse"})).await?;
    assert!(l.password);
    let web = stranger();

    // No password: a form (HTML, 401), and nothing of the file.
    let resp = web.get(&l.url).send().await?;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let form = resp.text().await?;
    assert!(form.contains("<form") && !form.contains("guarded"), "{form}");
    // A script sends it in a header.
    let resp = web.get(&l.url).header("x-ferry-link-password", "correct horse").send().await?;
    assert_eq!(resp.bytes().await?.as_ref(), b"guarded");
    assert_eq!(web.get(&l.url).header("x-ferry-link-password", "wrong").send().await?.status(), 401);
    // A person gives it in the form: a cookie for this link only.
    let resp = web
        .post(&l.url)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body("password=correct+horse")
        .send()
        .await?;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = resp.headers()[SET_COOKIE].to_str()?.to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap_or_default().to_owned();
    let resp = web.get(&l.url).header("cookie", &pair).send().await?;
    assert_eq!(resp.bytes().await?.as_ref(), b"guarded");
    let forged = format!("{}={}", pair.split('=').next().unwrap_or_default(), "0".repeat(64));
    assert_eq!(web.get(&l.url).header("cookie", forged).send().await?.status(), 401);
    // Guessing is throttled like logins.
    let mut throttled = false;
    for _ in 0..8 {
        let resp = web
            .post(&l.url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("password=guess")
            .send()
            .await?;
        throttled |= resp.status() == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(throttled, "wrong passwords must be throttled");

    // Links expire.
    let short = link(&alice, json!({"path": "f.txt", "expires_in": 1})).await?;
    assert_eq!(web.get(&short.url).send().await?.status(), StatusCode::OK);
    let expired = || async { web.get(&short.url).send().await.map(|r| r.status() == StatusCode::NOT_FOUND) };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !expired().await? {
        assert!(std::time::Instant::now() < deadline, "the link did not expire");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Only the owner lists and revokes; revoked links answer 404.
    let open = link(&alice, json!({"path": "f.txt"})).await?;
    let bobs: LinkList = bob.get("/links").send().await?.json().await?;
    assert!(bobs.links.is_empty());
    assert_eq!(bob.delete(&format!("/links/{}", open.id)).send().await?.status(), StatusCode::NOT_FOUND);
    assert_eq!(web.get(&open.url).send().await?.status(), StatusCode::OK);
    assert_eq!(alice.delete(&format!("/links/{}", open.id)).send().await?.status(), StatusCode::NO_CONTENT);
    assert_eq!(web.get(&open.url).send().await?.status(), StatusCode::NOT_FOUND);
    // Bad requests say what is wrong.
    for (body, needle) in [
        (json!({"path": "nope.txt"}), "nothing at"),
        (json!({"path": "f.txt", "expires_in": 0}), "expires_in"),
        (json!({"path": "f.txt", "password": ""}), "empty"),
    ] {
        let text = alice.post("/links").json(&body).send().await?.text().await?;
        assert!(text.contains(needle), "{body}: {text}");
    }
    Ok(())
}

/// A stranger's GET, from synchronous code.
fn get(url: &str) -> (StatusCode, String) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let resp = reqwest::get(url).await.expect("GET");
        (resp.status(), resp.text().await.unwrap_or_default())
    })
}

#[test]
fn the_cli_makes_lists_and_revokes_links() {
    let server = Server::start().expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(&server, "alice", "A", dir.path()).expect("daemon");
    std::fs::create_dir_all(d.path("photos/2026")).unwrap();
    std::fs::write(d.path("photos/2026/beach.jpg"), b"sand").unwrap();
    wait_until(Duration::from_secs(60), "the photo on the server", || {
        d.status().is_ok_and(|s| s["state"] == "idle" && s["pending_uploads"] == 0 && s["cursor"].as_i64() >= Some(3))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));

    let url = d.ferry(&["link", &d.path("photos").to_string_lossy(), "--expires", "7d"]).unwrap().trim().to_owned();
    assert!(url.starts_with(&format!("{}/l/", server.url)), "{url}");
    let (_, page) = get(&url);
    assert!(page.contains("2026/"), "{page}");
    let listed: LinkList = serde_json::from_str(&d.ferry(&["links", "--json"]).unwrap()).unwrap();
    assert_eq!(listed.links.len(), 1);
    assert_eq!(listed.links[0].path.as_ref().map(|p| p.as_str()), Some("photos"));
    assert!(listed.links[0].expires.is_some());
    // Errors say what to do.
    let err = d.ferry(&["link", "/somewhere/else"]).unwrap_err().to_string();
    assert!(err.contains("not inside the synced folder"), "{err}");
    let err = d.ferry(&["link", "photos/missing.jpg"]).unwrap_err().to_string();
    assert!(err.contains("not on the server"), "{err}");
    let err = d.ferry(&["link", "photos", "--expires", "7y"]).unwrap_err().to_string();
    assert!(err.contains("unit"), "{err}");

    // What happened, as a person reads it.
    let activity = d.ferry(&["activity"]).unwrap();
    assert!(activity.contains("alice (A)  added photos/2026/beach.jpg"), "{activity}");
    assert!(activity.contains("made folder photos/"), "{activity}");

    let out = d.ferry(&["unlink", &url]).unwrap();
    assert!(out.contains("revoked"), "{out}");
    assert_eq!(get(&url).0, StatusCode::NOT_FOUND);
    let err = d.ferry(&["unlink", &url]).unwrap_err().to_string();
    assert!(err.contains("not one of your links"), "{err}");
}
