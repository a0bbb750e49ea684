//! What every [`BlockStore`] must do, run against each implementation.

use std::collections::HashSet;

use futures_util::StreamExt;

use ferry_shared::BlockId;

use super::{BlockLoc, BlockStore, Object};

/// Runs every check against `store`, which starts empty.
pub async fn check(store: &dyn BlockStore) {
    let block = |n: u8| (BlockId::of(&[n; 7]), vec![n; 100 + n as usize]);

    // Nothing yet.
    let (a, a_bytes) = block(1);
    assert_eq!(store.get(a, BlockLoc::Loose).await.unwrap(), None);
    assert_eq!(store.list().collect::<Vec<_>>().await.len(), 0);

    // A block on its own; stored twice, one copy.
    store.put(a, a_bytes.clone()).await.unwrap();
    store.put(a, a_bytes.clone()).await.unwrap();
    assert_eq!(store.get(a, BlockLoc::Loose).await.unwrap(), Some(a_bytes.clone()));

    // A pack: each block read back by a ranged read, none of its neighbours'.
    let packed: Vec<(BlockId, Vec<u8>)> = (2..6).map(block).collect();
    let locs = store.put_pack(packed.iter().map(|(_, b)| b.clone()).collect()).await.unwrap();
    assert_eq!(locs.len(), packed.len());
    for ((id, bytes), loc) in packed.iter().zip(&locs) {
        assert!(matches!(loc, BlockLoc::Packed { len, .. } if *len as usize == bytes.len()));
        assert_eq!(store.get(*id, *loc).await.unwrap().as_ref(), Some(bytes));
    }
    let pack = Object::of(&packed[0].0, locs[0]);
    assert!(locs.iter().zip(&packed).all(|(l, (id, _))| Object::of(id, *l) == pack), "one pack");
    // A second pack is another object.
    let more = store.put_pack(vec![block(9).1]).await.unwrap();
    let other = Object::of(&block(9).0, more[0]);
    assert_ne!(other, pack);

    // Many read at once come back in the order asked: loose and packed mixed,
    // a pack's blocks out of order and twice, one never stored.
    let never = (block(7).0, BlockLoc::Loose);
    let wanted = vec![
        (packed[3].0, locs[3]),
        (a, BlockLoc::Loose),
        never,
        (packed[0].0, locs[0]),
        (block(9).0, more[0]),
        (packed[3].0, locs[3]),
        (packed[1].0, locs[1]),
    ];
    let expected: Vec<Option<Vec<u8>>> = vec![
        Some(packed[3].1.clone()),
        Some(a_bytes.clone()),
        None,
        Some(packed[0].1.clone()),
        Some(block(9).1),
        Some(packed[3].1.clone()),
        Some(packed[1].1.clone()),
    ];
    assert_eq!(store.get_many(wanted).await.unwrap(), expected);
    assert_eq!(store.get_many(Vec::new()).await.unwrap(), Vec::<Option<Vec<u8>>>::new());

    // Listed: every object once.
    let listed: Vec<Object> = store.list().map(|o| o.unwrap()).collect().await;
    let set: HashSet<Object> = listed.iter().copied().collect();
    assert_eq!(listed.len(), set.len(), "listed twice: {listed:?}");
    assert_eq!(set, HashSet::from([Object::Loose(a), pack, other]));

    // Deleted: gone, the others stay; deleting again is no error.
    store.delete(pack).await.unwrap();
    store.delete(pack).await.unwrap();
    assert_eq!(store.get(packed[0].0, locs[0]).await.unwrap(), None);
    store.delete(Object::Loose(a)).await.unwrap();
    assert_eq!(store.get(a, BlockLoc::Loose).await.unwrap(), None);
    assert_eq!(store.get(block(9).0, more[0]).await.unwrap(), Some(block(9).1));
    let listed: Vec<Object> = store.list().map(|o| o.unwrap()).collect().await;
    assert_eq!(listed, [other]);

    // Many objects are listed in full (a listing is read in pages).
    let ids: Vec<BlockId> = (0..1100u32).map(|n| BlockId::of(&n.to_le_bytes())).collect();
    futures_util::stream::iter(ids.iter().map(|id| store.put(*id, id.as_bytes().to_vec())))
        .buffer_unordered(16)
        .for_each(|r| async move { r.unwrap() })
        .await;
    let listed: HashSet<Object> = store.list().map(|o| o.unwrap()).collect().await;
    assert_eq!(listed.len(), ids.len() + 1);
    assert!(ids.iter().all(|id| listed.contains(&Object::Loose(*id))));
}

#[tokio::test]
async fn local_folder() {
    let dir = tempfile::tempdir().unwrap();
    check(&super::LocalBlockStore::open(dir.path()).unwrap()).await;
}

/// A cache in front of a store is a store: roomy, and so small that it
/// forgets as it goes.
#[tokio::test]
async fn cache_in_front_of_a_folder() {
    for capacity in [1 << 20, 800] {
        let dir = tempfile::tempdir().unwrap();
        let folder = std::sync::Arc::new(super::LocalBlockStore::open(dir.path()).unwrap());
        check(&super::cache::CachedBlockStore::new(folder, capacity)).await;
    }
}

/// What the cache holds it answers without the store; what it let go, or
/// never took (a block of more than an eighth of its room), the store does.
#[tokio::test]
async fn the_cache_answers_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let folder = std::sync::Arc::new(super::LocalBlockStore::open(dir.path()).unwrap());
    let cache = super::cache::CachedBlockStore::new(folder.clone(), 8 << 10);
    let block = |n: u32, len: usize| (BlockId::of(&n.to_le_bytes()), vec![n as u8; len]);
    let (a, a_bytes) = block(1, 100);
    cache.put(a, a_bytes.clone()).await.unwrap();
    let locs = cache.put_pack(vec![block(2, 100).1, block(3, 100).1]).await.unwrap();
    let (big, big_bytes) = block(4, 2 << 10);
    cache.put(big, big_bytes.clone()).await.unwrap();
    // Gone from the store behind it (not through the cache).
    folder.delete(Object::Loose(a)).await.unwrap();
    folder.delete(Object::of(&block(2, 0).0, locs[0])).await.unwrap();
    folder.delete(Object::Loose(big)).await.unwrap();
    assert_eq!(cache.get(a, BlockLoc::Loose).await.unwrap(), Some(a_bytes));
    let both = vec![(block(2, 0).0, locs[0]), (block(3, 0).0, locs[1]), (big, BlockLoc::Loose)];
    assert_eq!(cache.get_many(both).await.unwrap(), vec![Some(block(2, 100).1), Some(block(3, 100).1), None]);
    // 100 blocks of 100 bytes through an 8 KiB cache: the first ones went.
    for n in 10..110 {
        let (id, bytes) = block(n, 100);
        cache.put(id, bytes).await.unwrap();
        folder.delete(Object::Loose(id)).await.unwrap();
    }
    assert_eq!(cache.get(block(10, 0).0, BlockLoc::Loose).await.unwrap(), None);
    assert_eq!(cache.get(block(109, 0).0, BlockLoc::Loose).await.unwrap(), Some(block(109, 100).1));
}
