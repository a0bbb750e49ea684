//! Content-defined chunking: the system's one size rule and a streaming,
//! parallel chunk → hash → compress pipeline.
//!
//! # The size rule
//! fastcdc v2020 (normalization level 1, gear seed 0) with an average chunk
//! size that depends only on the file's size: `avg = clamp(pow2_floor(size /
//! 2048), 32 KiB, 4 MiB)`, `min = avg / 4`, `max = avg * 4`. A file therefore
//! has about 1,000–2,000 blocks once it is larger than 64 MiB, and never more
//! than ~2,600 (10 GiB at 4 MiB average), while files up to 64 MiB use 32 KiB
//! blocks, so a one-byte edit of a 64 MiB file re-sends ~32–64 KiB. Measured
//! by `ferry-bench chunking` (figures in the README's benchmark section). This
//! table is a protocol constant: changing it changes block boundaries and so
//! breaks dedup against existing data; add a new rule version instead.
//!
//! Block ids do not depend on the rule, so a client may keep a file's previous
//! tier when an edit moves it across a boundary (hysteresis) without breaking
//! anything: the server only verifies ids, never boundaries.
//!
//! # Streaming
//! [`Chunker`] reads any [`Read`] and never holds more than one `max` window;
//! [`encode_stream`] overlaps chunking on one thread with hashing and
//! compression on worker threads and hands blocks back in file order, with a
//! bounded number in flight (memory stays bounded for any file size).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex, mpsc};

use crate::block::{self, EncodedBlock};

/// Smallest average chunk size of the rule.
pub const MIN_AVG: usize = 32 * 1024;
/// Largest average chunk size of the rule (fastcdc's own upper bound).
pub const MAX_AVG: usize = 4 * 1024 * 1024;
/// Largest chunk any file can produce.
pub const MAX_CHUNK: usize = MAX_AVG * 4;
/// Smallest chunk any tier cuts (a file's last chunk may be smaller).
pub const MIN_CHUNK: usize = MIN_AVG / 4;

/// Most blocks a file of `size` bytes has under any tier of the rule:
/// every block but the last holds at least [`MIN_CHUNK`] bytes, so a
/// one-byte file has one block and an empty one none. The server refuses
/// longer lists before building them.
pub fn max_blocks(size: u64) -> u64 {
    if size == 0 { 0 } else { size / MIN_CHUNK as u64 + 1 }
}

/// fastcdc parameters for one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkParams {
    pub min: usize,
    pub avg: usize,
    pub max: usize,
}

impl ChunkParams {
    /// The size rule: parameters for a file of `size` bytes.
    pub fn for_size(size: u64) -> Self {
        let target = (size / 2048).max(1);
        let pow2 = 1u64 << (63 - target.leading_zeros());
        let avg = (pow2 as usize).clamp(MIN_AVG, MAX_AVG);
        let p = ChunkParams { min: avg / 4, avg, max: avg * 4 };
        p.validate().expect("size rule yields valid fastcdc parameters");
        p
    }

    /// Checks the limits fastcdc only checks with `debug_assert!`.
    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max)
            && self.min < self.avg
            && self.avg < self.max
            && self.min.is_multiple_of(2)
            && self.avg.is_multiple_of(2)
            && self.max.is_multiple_of(2);
        if ok { Ok(()) } else { Err(format!("invalid chunk parameters {self:?}")) }
    }
}

/// One chunk of a stream: its offset in the stream and its bytes.
#[derive(Debug)]
pub struct Chunk {
    pub offset: u64,
    pub data: Vec<u8>,
}

/// Streaming content-defined chunker over any reader.
pub struct Chunker<R: Read> {
    inner: fastcdc::v2020::StreamCDC<R>,
}

impl<R: Read> Chunker<R> {
    pub fn new(reader: R, params: ChunkParams) -> Self {
        Chunker { inner: fastcdc::v2020::StreamCDC::new(reader, params.min, params.avg, params.max) }
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = io::Result<Chunk>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next().map(|r| match r {
            Ok(c) => Ok(Chunk { offset: c.offset, data: c.data }),
            Err(fastcdc::v2020::Error::IoError(e)) => Err(e),
            Err(e) => Err(io::Error::other(e.to_string())),
        })
    }
}

/// A block produced by [`encode_stream`], with its place in the file.
#[derive(Debug)]
pub struct StreamBlock {
    pub offset: u64,
    pub block: EncodedBlock,
}

/// Summary of an encoded stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub n_blocks: u64,
    pub size: u64,
}

/// Chunks `reader` with `params`, hashes and compresses each chunk on
/// `workers` threads (at least one) while the next is being cut, and calls
/// `sink` with every block in file order. Stops at the first error from the
/// reader or the sink. At most `2 * workers + 2` blocks are in memory at once.
pub fn encode_stream<R, F, E>(reader: R, params: ChunkParams, workers: usize, mut sink: F) -> Result<StreamStats, E>
where
    R: Read + Send,
    F: FnMut(StreamBlock) -> Result<(), E>,
    E: From<io::Error>,
{
    let workers = workers.max(1);
    let (job_tx, job_rx) = mpsc::sync_channel::<(u64, Chunk)>(workers + 1);
    // Shared by the workers only: when they all stop, the chunker's sends fail.
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::sync_channel::<(u64, StreamBlock)>(workers + 1);
    std::thread::scope(|scope| {
        let chunker = scope.spawn(move || -> io::Result<()> {
            for (seq, chunk) in Chunker::new(reader, params).enumerate() {
                if job_tx.send((seq as u64, chunk?)).is_err() {
                    break; // the consumer stopped early
                }
            }
            Ok(())
        });
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let job_rx = Arc::clone(&job_rx);
            scope.spawn(move || {
                loop {
                    let job = job_rx.lock().expect("job queue poisoned").recv();
                    let Ok((seq, chunk)) = job else { break };
                    let block = StreamBlock { offset: chunk.offset, block: block::encode_owned(chunk.data) };
                    if done_tx.send((seq, block)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        drop(job_rx);

        let mut stats = StreamStats::default();
        let mut pending = BTreeMap::new();
        let mut next = 0u64;
        let mut result = Ok(());
        for (seq, block) in done_rx.iter() {
            pending.insert(seq, block);
            while let Some(b) = pending.remove(&next) {
                next += 1;
                stats.n_blocks += 1;
                stats.size += u64::from(b.block.len);
                if let Err(e) = sink(b) {
                    result = Err(e);
                    break;
                }
            }
            if result.is_err() {
                break;
            }
        }
        drop(done_rx); // unblocks workers and the chunker if we stopped early
        result?;
        chunker.join().expect("chunker thread panicked")?;
        Ok(stats)
    })
}

/// Number of worker threads worth using on this machine for [`encode_stream`]:
/// one per core. The chunker (fastcdc, ~3 GB/s) needs only part of a core, so
/// the workers share the rest (measured in `ferry-bench chunking`).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn size_rule() {
        assert_eq!(ChunkParams::for_size(0).avg, MIN_AVG);
        assert_eq!(ChunkParams::for_size(64 << 20).avg, 32 * 1024);
        assert_eq!(ChunkParams::for_size(128 << 20).avg, 64 * 1024);
        assert_eq!(ChunkParams::for_size(10 << 30).avg, MAX_AVG);
        assert_eq!(ChunkParams::for_size(u64::MAX).max, MAX_CHUNK);
        for shift in 0..40 {
            ChunkParams::for_size(1 << shift).validate().unwrap();
        }
    }

    #[test]
    fn no_tier_cuts_more_blocks_than_max_blocks() {
        assert_eq!((max_blocks(0), max_blocks(1), max_blocks(MIN_CHUNK as u64)), (0, 1, 2));
        // Every tier, and the smallest one for data of any size (a client
        // may keep a file's earlier tier), on data that cuts often (zeros
        // cut at the maximum; repeated short patterns near the minimum).
        let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8 ^ (i >> 13) as u8).collect();
        for size in [1usize, 100, MIN_CHUNK - 1, MIN_CHUNK, MIN_CHUNK + 1, 100_000, 3 << 20] {
            for params in [ChunkParams::for_size(size as u64), ChunkParams::for_size(0)] {
                for d in [&data[..size], &pseudo_random(size, 9)[..]] {
                    let n = Chunker::new(d, params).count() as u64;
                    assert!(n <= max_blocks(size as u64), "{size} bytes: {n} blocks with {params:?}");
                }
            }
        }
    }

    #[test]
    fn pipeline_matches_plain_chunker_and_reassembles() {
        let data = pseudo_random(3 << 20, 7);
        let params = ChunkParams::for_size(data.len() as u64);
        let plain: Vec<Chunk> = Chunker::new(&data[..], params).collect::<io::Result<_>>().unwrap();
        let mut got = Vec::new();
        let stats = encode_stream(&data[..], params, 3, |b| -> io::Result<()> {
            got.push(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(stats.size, data.len() as u64);
        assert_eq!(got.len(), plain.len());
        let mut rebuilt = Vec::new();
        for (b, c) in got.iter().zip(&plain) {
            assert_eq!(b.offset, c.offset);
            assert_eq!(b.block.id, block::BlockId::of(&c.data));
            rebuilt.extend(block::decode(&b.block.id, b.block.encoding, &b.block.bytes).unwrap());
        }
        assert_eq!(rebuilt, data);
    }

    #[test]
    fn one_byte_edit_changes_few_blocks() {
        let data = pseudo_random(8 << 20, 3);
        let params = ChunkParams::for_size(data.len() as u64);
        let ids = |d: &[u8]| -> Vec<block::BlockId> {
            Chunker::new(d, params).map(|c| block::BlockId::of(&c.unwrap().data)).collect()
        };
        let before = ids(&data);
        let mut edited = data.clone();
        edited.insert(0, 42);
        let after = ids(&edited);
        let new = after.iter().filter(|id| !before.contains(id)).count();
        assert!(new <= 2, "{new} blocks changed");
    }

    #[test]
    fn sink_error_stops_early() {
        let data = pseudo_random(2 << 20, 5);
        let mut n = 0;
        let r = encode_stream(&data[..], ChunkParams::for_size(0), 2, |_| {
            n += 1;
            if n == 2 { Err(io::Error::other("stop")) } else { Ok(()) }
        });
        assert!(r.is_err());
        assert_eq!(n, 2);
    }
}
