//! The commit body as an attacker sends it, into the real metadata store
//! (SQLite in a temporary folder, the server's own commit path): whatever
//! parses is answered, one result per operation, without a panic, and
//! within libFuzzer's time and memory limits (a body of edits once asked
//! for gigabytes; one of unknown block ids once held the writer for a
//! minute).
#![no_main]

use std::sync::OnceLock;

use ferry_server::meta::sqlite::SqliteStore;
use ferry_server::meta::{Accounts, BlockRecords, Caller, Files, NewBlock};
use ferry_shared::BlockId;
use ferry_shared::api::{CommitRequest, MAX_COMMIT_OPS};
use libfuzzer_sys::fuzz_target;

struct World {
    store: SqliteStore,
    caller: Caller,
    _dir: std::path::PathBuf,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ferry-fuzz-commit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let store = SqliteStore::open(&dir.join("ferry.db")).expect("store");
        let user = store.add_user("fuzz", "x", 1 << 40).expect("user");
        store.create_token(user, "dev", [7; 32]).expect("token");
        let caller = store.authenticate([7; 32]).expect("auth").expect("caller");
        // Blocks the account owns: ids of the bytes 0..=255 (one byte each)
        // and of 8 KiB of each byte value.
        let blocks: Vec<NewBlock> = (0..=255u8)
            .flat_map(|b| {
                [(vec![b], 1u32), (vec![b; 8192], 8192)].map(|(data, size)| NewBlock {
                    id: BlockId::of(&data),
                    size,
                    stored_size: size,
                    loc: ferry_server::blocks::BlockLoc::Loose,
                })
            })
            .collect();
        store.add_blocks(user, &blocks).expect("blocks");
        World { store, caller, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<CommitRequest>(data) else { return };
    if req.ops.is_empty() || req.ops.len() > MAX_COMMIT_OPS {
        return; // the handler refuses these before the store
    }
    let w = world();
    let n = req.ops.len();
    if let Ok(outcome) = w.store.commit(&w.caller, req.ops, Vec::new()) {
        assert_eq!(outcome.results.len(), n);
    }
});
