//! The permission matrix: every operation on alice's data × every kind of
//! caller, against the real server. Allowed, or 401/403/404 with nothing of
//! the data and no hint that it exists: a stranger's 404 reads exactly like
//! one for something that was never there, and a revoked, expired or
//! guessed link answers the same as each other.
//! Members of a shared folder join it: the owner may do everything, an
//! editor reads and writes but does not decide who is in, a viewer only
//! reads, and anyone else learns nothing of it.

use ferry_shared::api::Link;
use ferry_tests::{Client, Server};
use reqwest::Method;
use serde_json::json;

type TestResult = anyhow::Result<()>;

const SECRET: &[u8] = b"alice's secret contents";

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    Owner,
    Stranger,
    Anonymous,
}

struct Op {
    name: &'static str,
    method: Method,
    path: String,
    body: Option<serde_json::Value>,
}

fn op(name: &'static str, method: Method, path: &str, body: Option<serde_json::Value>) -> Op {
    Op { name, method, path: path.to_owned(), body }
}

async fn send(c: &Client, who: Caller, o: &Op) -> anyhow::Result<(u16, Vec<u8>)> {
    let url = format!("{}{}", c.url, o.path);
    let mut req = c.http.request(o.method.clone(), &url);
    if who != Caller::Anonymous {
        req = req.bearer_auth(&c.token);
    }
    if let Some(b) = &o.body {
        req = req.json(b);
    }
    let resp = req.send().await?;
    Ok((resp.status().as_u16(), resp.bytes().await?.to_vec()))
}

/// The file's contents, or a name the caller did not ask about.
fn leaks(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    body.windows(SECRET.len()).any(|w| w == SECRET) || text.contains("laptop") || text.contains("\"rev\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_by_every_caller() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "laptop").await?;
    let bob = Client::user(&server, "bob", "desk").await?;
    let put = alice.put_small("private/secret.txt", SECRET, None).await?;
    let rev = put.entry.as_ref().map(|e| e.rev).unwrap_or_default();
    let link: Link = alice.post("/links").json(&json!({"path": "private"})).send().await?.json().await?;

    let ops = vec![
        op("download", Method::GET, "/files/download?path=private/secret.txt", None),
        op("download a revision", Method::GET, &format!("/files/download?path=private/secret.txt&rev={rev}"), None),
        op("list revisions", Method::GET, "/files/list_revisions?path=private/secret.txt", None),
        op("list revisions (POST)", Method::POST, "/files/list_revisions", Some(json!({"path": "private/secret.txt"}))),
        op("changes", Method::GET, "/changes?cursor=0", None),
        op("activity", Method::GET, "/activity", None),
        op("list the folder", Method::GET, "/files/list?path=private", None),
        op("zip the folder", Method::GET, "/files/zip?path=private", None),
        op("trash", Method::GET, "/trash", None),
        op("make a link", Method::POST, "/links", Some(json!({"path": "private"}))),
        op("list links", Method::GET, "/links", None),
        op("revoke the link", Method::DELETE, &format!("/links/{}", link.id), None),
        // The destructive ones last: the owner runs them in this order.
        op(
            "restore",
            Method::POST,
            "/commit",
            Some(json!({"ops": [{"op": "restore", "path": "private/secret.txt", "rev": rev}]})),
        ),
        op("delete", Method::POST, "/commit", Some(json!({"ops": [{"op": "delete", "path": "private/secret.txt"}]}))),
        op("move", Method::POST, "/commit", Some(json!({"ops": [{"op": "move", "from": "private", "to": "moved"}]}))),
        op("delete (files API)", Method::POST, "/files/delete", Some(json!({"path": "moved"}))),
        op("restore from the trash", Method::POST, "/trash/restore", Some(json!({"path": "moved"}))),
    ];

    for o in &ops {
        // Nobody without a token: 401, nothing else.
        let (status, body) = send(&alice, Caller::Anonymous, o).await?;
        assert_eq!(status, 401, "{} without a token", o.name);
        assert!(!leaks(&body), "{} without a token leaks", o.name);
        // A stranger works in their own namespace: never alice's data.
        let (status, body) = send(&bob, Caller::Stranger, o).await?;
        assert!(!leaks(&body), "{} by a stranger leaks: {}", o.name, String::from_utf8_lossy(&body));
        match o.name {
            // Their own (empty) feeds and lists.
            "changes" | "activity" | "list links" | "trash" => assert_eq!(status, 200, "{}", o.name),
            // Per-operation answers inside a 200: each must be a 404.
            "restore" | "move" | "delete" => {
                assert_eq!(status, 200, "{}", o.name);
                let r: serde_json::Value = serde_json::from_slice(&body)?;
                assert_eq!(r["results"][0]["status"], 404, "{} by a stranger: {r}", o.name);
            }
            _ => assert_eq!(status, 404, "{} by a stranger", o.name),
        }
    }
    // What a stranger learns equals what a path that never existed says.
    let never = op("download", Method::GET, "/files/download?path=private/never.txt", None);
    let (_, strangers) = send(&bob, Caller::Stranger, &ops[0]).await?;
    let (_, nothing) = send(&bob, Caller::Stranger, &never).await?;
    assert_eq!(
        String::from_utf8_lossy(&strangers).replace("secret.txt", "X"),
        String::from_utf8_lossy(&nothing).replace("never.txt", "X")
    );
    // The owner may do all of it (the destructive ones last, in order).
    for o in &ops {
        let (status, body) = send(&alice, Caller::Owner, o).await?;
        assert!((200..300).contains(&status), "{} by the owner: {status}", o.name);
        if o.name == "move" || o.name == "delete" || o.name == "restore" {
            let r: serde_json::Value = serde_json::from_slice(&body)?;
            assert!(r["results"][0]["entry"].is_object(), "{} by the owner: {r}", o.name);
        }
        if o.name == "trash" {
            // Nothing deleted yet: the matrix's deletes come after it.
            let t: serde_json::Value = serde_json::from_slice(&body)?;
            assert_eq!(t["items"], json!([]), "{t}");
        }
        if o.name == "restore from the trash" {
            let e: serde_json::Value = serde_json::from_slice(&body)?;
            assert_eq!(e["path"], "moved", "{e}");
        }
    }
    Ok(())
}

/// Link holders: the right link (and password) opens only what is under
/// it; a wrong password shows nothing; revoked, expired and guessed links
/// answer the same 404, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_link_holder() -> TestResult {
    let server = Server::start()?;
    let alice = Client::user(&server, "alice", "laptop").await?;
    alice.put_small("pub/readme.txt", b"public", None).await?;
    alice.put_small("private/secret.txt", SECRET, None).await?;
    let make = |body: serde_json::Value| {
        let alice = alice.clone();
        async move { anyhow::Ok(alice.post("/links").json(&body).send().await?.json::<Link>().await?) }
    };
    let open = make(json!({"path": "pub"})).await?;
    let guarded = make(json!({"path": "pub", "password": "pw-789"})).await?;
    let revoked = make(json!({"path": "pub"})).await?;
    alice.delete(&format!("/links/{}", revoked.id)).send().await?;
    let expiring = make(json!({"path": "pub", "expires_in": 1})).await?;
    let guessed = format!("{}/l/{}", server.url, "Z".repeat(43));
    let web = reqwest::Client::new();
    let get = |url: String, pw: Option<&'static str>| {
        let web = web.clone();
        async move {
            let mut req = web.get(&url);
            if let Some(pw) = pw {
                req = req.header("x-ferry-link-password", pw);
            }
            let resp = req.send().await?;
            anyhow::Ok((resp.status().as_u16(), resp.bytes().await?.to_vec()))
        }
    };
    let under = ["", "/readme.txt", "?zip=1"];
    for u in under {
        let (s, b) = get(format!("{}{u}", open.url), None).await?;
        assert_eq!(s, 200, "holder {u}");
        assert!(!leaks(&b), "holder {u}");
        let (s, _) = get(format!("{}{u}", guarded.url), Some("pw-789")).await?;
        assert_eq!(s, 200, "holder with the password {u}");
        for pw in [None, Some("wrong")] {
            let (s, b) = get(format!("{}{u}", guarded.url), pw).await?;
            assert_eq!(s, 401, "holder with password {pw:?} {u}");
            let text = String::from_utf8_lossy(&b);
            assert!(!text.contains("readme.txt") && !text.contains("public"), "{u} with {pw:?}: {text}");
        }
    }
    // Outside the link: nothing, however it is spelled.
    for escape in ["/..%2Fprivate%2Fsecret.txt", "/%2E%2E/private/secret.txt", "/../private/secret.txt"] {
        let (s, b) = get(format!("{}{escape}", open.url), None).await?;
        assert!(matches!(s, 400 | 404), "{escape}: {s}");
        assert!(!leaks(&b), "{escape}");
    }
    // Revoked, expired and guessed: one and the same answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while get(expiring.url.clone(), None).await?.0 != 404 {
        assert!(std::time::Instant::now() < deadline, "the link did not expire");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let answers =
        [get(revoked.url.clone(), None).await?, get(expiring.url.clone(), None).await?, get(guessed, None).await?];
    assert!(answers.iter().all(|a| a == &answers[0] && a.0 == 404), "{answers:?}");
    Ok(())
}

/// What a member of a shared folder may do in it, by role; a stranger
/// (not in it) gets what a path that was never there gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_of_a_shared_folder() -> TestResult {
    let server = Server::start()?;
    for name in ["carol", "dave"] {
        ferry_tests::add_user(&server.data, name, &format!("password-{name}"), None)?;
    }
    let alice = Client::user(&server, "alice", "laptop").await?;
    let bob = Client::user(&server, "bob", "desk").await?;
    let carol = Client::user(&server, "carol", "desk").await?;
    let dave = Client::user(&server, "dave", "desk").await?;
    alice.put_small("Team/doc.txt", SECRET, None).await?;
    for (who, role) in [("bob", "editor"), ("carol", "viewer")] {
        let r = alice.post("/shares").json(&json!({"path": "Team", "with": who, "role": role})).send().await?;
        assert_eq!(r.status(), 201, "{}", r.text().await?);
    }
    let shares: serde_json::Value = alice.get("/shares").send().await?.json().await?;
    let id = shares["shares"][0]["id"].as_i64().expect("share id");
    let rev = |c: &Client| {
        let c = c.clone();
        async move {
            let r: serde_json::Value = c.get("/files/list_revisions?path=Team/doc.txt").send().await?.json().await?;
            anyhow::Ok(r["revisions"][0]["rev"].as_i64().unwrap_or(0))
        }
    };
    let head = rev(&alice).await?;

    // (name, method, path, body, owner, editor, viewer): the status each
    // gets (for commits, the operation's own status).
    type Row = (&'static str, Method, String, Option<serde_json::Value>, u16, u16, u16);
    let commit = |op: serde_json::Value| Some(json!({ "ops": [op] }));
    let rows: Vec<Row> = vec![
        ("download", Method::GET, "/files/download?path=Team/doc.txt".into(), None, 200, 200, 200),
        ("history", Method::GET, "/files/list_revisions?path=Team/doc.txt".into(), None, 200, 200, 200),
        ("list shares", Method::GET, "/shares".into(), None, 200, 200, 200),
        (
            "add a file",
            Method::POST,
            "/commit".into(),
            commit(json!({"op": "mkdir", "path": "Team/new"})),
            200,
            200,
            403,
        ),
        (
            "restore",
            Method::POST,
            "/commit".into(),
            commit(json!({"op": "restore", "path": "Team/doc.txt", "rev": head})),
            200,
            200,
            403,
        ),
        ("make a link", Method::POST, "/links".into(), Some(json!({"path": "Team/doc.txt"})), 201, 201, 403),
        (
            "share with someone else",
            Method::POST,
            "/shares".into(),
            Some(json!({"path": "Team", "with": "dave"})),
            201,
            403,
            403,
        ),
        (
            "change a role",
            Method::PUT,
            format!("/shares/{id}/members/dave"),
            Some(json!({"role": "viewer"})),
            200,
            403,
            403,
        ),
        ("revoke someone", Method::DELETE, format!("/shares/{id}/members/dave"), None, 204, 403, 403),
    ];
    let status_of = |method: &Method, body: &[u8], status: u16| -> u16 {
        if method == Method::POST && status == 200 {
            let r: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            if let Some(s) = r["results"][0]["status"].as_u64() {
                return s as u16;
            }
        }
        status
    };
    // Editor and viewer first, then the owner (who adds dave, changes his
    // role, removes him).
    for (who, c, col) in [("editor", &bob, 5), ("viewer", &carol, 6), ("owner", &alice, 4)] {
        for (name, method, path, body, o, e, v) in &rows {
            let want = match col {
                4 => *o,
                5 => *e,
                _ => *v,
            };
            let op = Op { name, method: method.clone(), path: path.clone(), body: body.clone() };
            let (status, resp) = send(c, Caller::Owner, &op).await?;
            let got = status_of(method, &resp, status);
            assert_eq!(got, want, "{name} by the {who}: {}", String::from_utf8_lossy(&resp));
            if want == 403 {
                assert!(!leaks(&resp), "{name} by the {who} leaks: {}", String::from_utf8_lossy(&resp));
            }
        }
    }
    // A viewer's download is the file itself; the editor's mkdir reached everyone.
    let (s, b) =
        send(&carol, Caller::Owner, &op("download", Method::GET, "/files/download?path=Team/doc.txt", None)).await?;
    assert_eq!((s, b.as_slice()), (200, SECRET));
    // A stranger: the same 404 as for nothing, and the share's endpoints
    // answer as for a share that does not exist.
    let never = op("never", Method::GET, "/files/download?path=Team/never.txt", None);
    let theirs = op("download", Method::GET, "/files/download?path=Team/doc.txt", None);
    let (s1, b1) = send(&dave, Caller::Stranger, &theirs).await?;
    let (s2, b2) = send(&dave, Caller::Stranger, &never).await?;
    assert_eq!(s1, 404);
    assert_eq!(
        (s1, String::from_utf8_lossy(&b1).replace("doc.txt", "X")),
        (s2, String::from_utf8_lossy(&b2).replace("never.txt", "X"))
    );
    for (m, p) in [(Method::DELETE, format!("/shares/{id}")), (Method::DELETE, format!("/shares/{id}/members/bob"))] {
        let (s, b) = send(&dave, Caller::Stranger, &op("share op", m.clone(), &p, None)).await?;
        let (s0, b0) =
            send(&dave, Caller::Stranger, &op("share op", m, &p.replace(&id.to_string(), "99999"), None)).await?;
        assert_eq!((s, s0), (404, 404), "{p}");
        assert_eq!(
            String::from_utf8_lossy(&b).replace(&id.to_string(), "N"),
            String::from_utf8_lossy(&b0).replace("99999", "N"),
            "{p}"
        );
    }
    // Members may leave; the owner may not (they unshare instead).
    assert_eq!(carol.delete(&format!("/shares/{id}/members/carol")).send().await?.status(), 204);
    assert_eq!(alice.delete(&format!("/shares/{id}/members/alice")).send().await?.status(), 400);
    let (s, _) = send(&carol, Caller::Owner, &theirs).await?;
    assert_eq!(s, 404, "a viewer who left reads nothing");
    Ok(())
}

/// One commit operation by `c`; its per-operation status.
async fn op_status(c: &Client, op: serde_json::Value) -> anyhow::Result<u64> {
    let r: serde_json::Value = c.post("/commit").json(&json!({ "ops": [op] })).send().await?.json().await?;
    Ok(r["results"][0]["status"].as_u64().unwrap_or(0))
}

async fn make_link(c: &Client, path: &str) -> anyhow::Result<(u16, Option<Link>)> {
    let resp = c.post("/links").json(&json!({ "path": path })).send().await?;
    let status = resp.status().as_u16();
    Ok((status, if status == 201 { Some(resp.json().await?) } else { None }))
}

/// What a stranger gets at `url`: the status and the body.
async fn open_link(url: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let resp = reqwest::Client::new().get(url).send().await?;
    Ok((resp.status().as_u16(), resp.bytes().await?.to_vec()))
}

fn zip_names(zip: zip::ZipArchive<std::io::Cursor<Vec<u8>>>) -> anyhow::Result<Vec<String>> {
    Ok(zip.file_names().map(|n| n.map(|n| n.into_owned())).collect::<Result<_, _>>()?)
}

async fn links_of(c: &Client) -> anyhow::Result<Vec<Link>> {
    let list: ferry_shared::api::LinkList = c.get("/links").send().await?.json().await?;
    Ok(list.links)
}

/// A link speaks for its maker: it shows only what the maker may publish.
/// Links follow their items through moves inside what the maker may link
/// (their own tree, folders they own or edit) and end when the item leaves
/// it, whoever moves it; a member's links into a share end when they
/// leave it or become a viewer; the share's owner sees and revokes every
/// link into it; and a link in a viewer's tree never passes through the
/// share they may only view, however they move its mount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_stay_within_what_their_maker_may_publish() -> TestResult {
    let server = Server::start()?;
    ferry_tests::add_user(&server.data, "carol", "password-carol", None)?;
    let alice = Client::user(&server, "alice", "laptop").await?;
    let bob = Client::user(&server, "bob", "desk").await?;
    let carol = Client::user(&server, "carol", "desk").await?;
    for (p, body) in [
        ("team/plan.txt", &b"the team's plan"[..]),
        ("team/plan2.txt", b"plan two"),
        ("team/pricing.txt", b"pricing"),
        ("team/sub/deep.txt", b"deep"),
        ("private/keep.txt", b"private"),
    ] {
        assert!(alice.put_small(p, body, None).await?.entry.is_some(), "{p}");
    }
    for (who, role) in [("bob", "editor"), ("carol", "viewer")] {
        let r = alice.post("/shares").json(&json!({"path": "team", "with": who, "role": role})).send().await?;
        assert_eq!(r.status(), 201, "{}", r.text().await?);
    }

    // The owner sees a member's link into the share, says who made it, and
    // may revoke it.
    let (s, l) = make_link(&bob, "team/plan.txt").await?;
    let bobs = l.unwrap_or_else(|| panic!("an editor links into the share: {s}"));
    assert_eq!(open_link(&bobs.url).await?, (200, b"the team's plan".to_vec()));
    let seen = links_of(&alice).await?;
    let theirs = seen.iter().find(|l| l.id == bobs.id).expect("the owner sees the member's link");
    assert_eq!((theirs.by.as_deref(), theirs.path.as_ref().map(|p| p.as_str())), (Some("bob"), Some("team/plan.txt")));
    assert!(links_of(&bob).await?.iter().all(|l| l.by.is_none()), "bob's own links carry no maker");
    assert!(links_of(&carol).await?.is_empty(), "a viewer sees nobody's links");
    assert_eq!(carol.delete(&format!("/links/{}", bobs.id)).send().await?.status(), 404);
    assert_eq!(alice.delete(&format!("/links/{}", bobs.id)).send().await?.status(), 204);
    assert_eq!(open_link(&bobs.url).await?.0, 404);

    // (a) The owner moves a file a member linked into her private tree and
    // overwrites it: the member's link ends, before and after he leaves.
    let (_, l) = make_link(&bob, "team/plan2.txt").await?;
    let bobs = l.expect("linked");
    assert_eq!(
        op_status(&alice, json!({"op": "move", "from": "team/plan2.txt", "to": "private/plan2.txt"})).await?,
        200
    );
    let rev = alice.get("/files/list_revisions?path=private/plan2.txt").send().await?;
    let rev = rev.json::<serde_json::Value>().await?["revisions"][0]["rev"].as_i64();
    assert!(alice.put_small("private/plan2.txt", SECRET, rev).await?.entry.is_some());
    let (status, body) = open_link(&bobs.url).await?;
    assert_eq!(status, 404, "a member's link follows a file into the owner's private tree");
    assert!(!leaks(&body));
    assert!(links_of(&bob).await?.iter().all(|l| l.id != bobs.id), "the ended link is gone from bob's list");
    assert!(links_of(&alice).await?.iter().all(|l| l.id != bobs.id));

    // (b) A member moves a file the owner linked into his own tree and
    // overwrites it: the owner's link ends.
    let (_, l) = make_link(&alice, "team/pricing.txt").await?;
    let alices = l.expect("linked");
    assert_eq!(
        op_status(&bob, json!({"op": "move", "from": "team/pricing.txt", "to": "mine/pricing.txt"})).await?,
        200
    );
    let rev = bob.get("/files/list_revisions?path=mine/pricing.txt").send().await?;
    let rev = rev.json::<serde_json::Value>().await?["revisions"][0]["rev"].as_i64();
    assert!(bob.put_small("mine/pricing.txt", b"bob's private numbers", rev).await?.entry.is_some());
    let (status, body) = open_link(&alices.url).await?;
    assert_eq!(status, 404, "the owner's link follows a file into a member's tree");
    assert!(!String::from_utf8_lossy(&body).contains("bob's private"));
    // Moved back by its owner's member into the share: the link stays ended.
    assert_eq!(
        op_status(&bob, json!({"op": "move", "from": "mine/pricing.txt", "to": "team/pricing.txt"})).await?,
        200
    );
    assert_eq!(open_link(&alices.url).await?.0, 404);

    // A member's links end when he becomes a viewer, or leaves.
    let (_, l) = make_link(&bob, "team/sub").await?;
    let bobs = l.expect("linked");
    assert_eq!(open_link(&format!("{}/deep.txt", bobs.url)).await?, (200, b"deep".to_vec()));
    let shares: serde_json::Value = alice.get("/shares").send().await?.json().await?;
    let id = shares["shares"][0]["id"].as_i64().expect("share id");
    let r = alice.put(&format!("/shares/{id}/members/bob")).json(&json!({"role": "viewer"})).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(open_link(&bobs.url).await?.0, 404, "a viewer publishes nothing of the share");
    let r = alice.put(&format!("/shares/{id}/members/bob")).json(&json!({"role": "editor"})).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(open_link(&bobs.url).await?.0, 404, "made an editor again: the old link stays ended");
    let (_, l) = make_link(&bob, "team/sub").await?;
    let bobs = l.expect("linked");
    assert_eq!(bob.delete(&format!("/shares/{id}/members/bob")).send().await?.status(), 204);
    assert_eq!(open_link(&bobs.url).await?.0, 404, "a member who left publishes nothing of it");

    // A viewer links nothing in the share, however the mount is moved:
    // a link to a folder of theirs holding it never shows it.
    assert_eq!(make_link(&carol, "team/plan.txt").await?.0, 403);
    assert_eq!(op_status(&carol, json!({"op": "mkdir", "path": "pub"})).await?, 200);
    assert!(carol.put_small("pub/mine.txt", b"carol's own", None).await?.entry.is_some());
    assert_eq!(op_status(&carol, json!({"op": "move", "from": "team", "to": "pub/team"})).await?, 200);
    assert_eq!(make_link(&carol, "pub/team/plan.txt").await?.0, 403);
    let (s, l) = make_link(&carol, "pub").await?;
    let carols = l.unwrap_or_else(|| panic!("a viewer links her own folder: {s}"));
    let (status, page) = open_link(&carols.url).await?;
    let page = String::from_utf8_lossy(&page).into_owned();
    assert_eq!(status, 200);
    assert!(page.contains("mine.txt") && !page.contains("team"), "{page}");
    for under in ["/team", "/team/", "/team/plan.txt", "/team/sub/deep.txt", "/team?zip=1"] {
        let (status, body) = open_link(&format!("{}{under}", carols.url)).await?;
        assert_eq!(status, 404, "{under}");
        // The answer for something never there, naming only what was asked.
        let (_, never) = open_link(&format!("{}{}", carols.url, under.replace("team", "never"))).await?;
        assert_eq!(String::from_utf8_lossy(&body), String::from_utf8_lossy(&never).replace("never", "team"), "{under}");
    }
    let (status, zip) = open_link(&format!("{}?zip=1", carols.url)).await?;
    assert_eq!(status, 200);
    let zip = zip::ZipArchive::new(std::io::Cursor::new(zip))?;
    let names = zip_names(zip)?;
    assert_eq!(names, ["mine.txt"], "the zip holds only carol's own");
    // Her own zip (signed in) has all she may read.
    let resp = carol.get("/files/zip?path=pub").send().await?;
    let names = zip_names(zip::ZipArchive::new(std::io::Cursor::new(resp.bytes().await?.to_vec()))?)?;
    assert!(names.iter().any(|n| n == "team/plan.txt"), "{names:?}");
    // Made an editor, her link shows the share (she may publish it now).
    let r = alice.put(&format!("/shares/{id}/members/carol")).json(&json!({"role": "editor"})).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(open_link(&format!("{}/team/plan.txt", carols.url)).await?, (200, b"the team's plan".to_vec()));
    Ok(())
}
