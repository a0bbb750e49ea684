//! Blocks: ids and the wire codec.
//!
//! A block is a content-defined chunk of a file. Its id is the BLAKE3 hash of
//! its plaintext, so identical content has one id everywhere (dedup) and every
//! receiver can verify what it got. On the wire a block travels as a zstd frame
//! ([`BlockEncoding::Zstd`]) or, when compression does not shrink it, as its
//! raw bytes ([`BlockEncoding::Raw`]).

use std::fmt;
use std::str::FromStr;

/// zstd level for blocks: level 1 compresses text-like data well while costing
/// little on incompressible data (measured in `ferry-bench chunking`).
pub const ZSTD_LEVEL: i32 = 1;

/// Largest plaintext block, equal to the largest chunk the size rule allows.
pub const MAX_BLOCK_SIZE: usize = crate::chunk::MAX_CHUNK;

/// The BLAKE3 hash of a block's plaintext.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockId(pub [u8; 32]);

impl BlockId {
    pub fn of(data: &[u8]) -> Self {
        BlockId(*blake3::hash(data).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_slice(b: &[u8]) -> Option<Self> {
        Some(BlockId(b.try_into().ok()?))
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockId({})", &self.to_hex()[..12])
    }
}

/// A block id that is not 64 lowercase-or-uppercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block id must be 64 hex digits")]
pub struct BadBlockId;

impl FromStr for BlockId {
    type Err = BadBlockId;
    fn from_str(s: &str) -> Result<Self, BadBlockId> {
        if s.len() != 64 {
            return Err(BadBlockId);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| BadBlockId)?;
        Ok(BlockId(out))
    }
}

impl serde::Serialize for BlockId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for BlockId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for BlockId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-fA-F]{64}$"))
            .description(Some("BLAKE3 hash of the block's plaintext, 64 hex digits"))
            .into()
    }
}
#[cfg(feature = "openapi")]
impl utoipa::ToSchema for BlockId {}

/// How a block's bytes are encoded on the wire (and at rest, under encryption).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockEncoding {
    Raw,
    Zstd,
}

impl BlockEncoding {
    /// Value of the `ferry-block-encoding` header.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockEncoding::Raw => "raw",
            BlockEncoding::Zstd => "zstd",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "raw" => Some(BlockEncoding::Raw),
            "zstd" => Some(BlockEncoding::Zstd),
            _ => None,
        }
    }
}

/// HTTP header naming a block body's [`BlockEncoding`] (default `zstd`).
pub const ENCODING_HEADER: &str = "ferry-block-encoding";

/// A block ready to send or store: its id, plaintext length and encoded bytes.
#[derive(Clone)]
pub struct EncodedBlock {
    pub id: BlockId,
    pub len: u32,
    pub encoding: BlockEncoding,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for EncodedBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedBlock")
            .field("id", &self.id)
            .field("len", &self.len)
            .field("encoding", &self.encoding)
            .field("encoded_len", &self.bytes.len())
            .finish()
    }
}

/// Hashes and compresses one plaintext block, keeping it raw when zstd does
/// not make it smaller.
pub fn encode(data: &[u8]) -> EncodedBlock {
    encode_owned(data.to_vec())
}

/// Sample size for the incompressibility check.
const SAMPLE: usize = 8 * 1024;

/// Like [`encode`], taking the block by value (no copy when it stays raw).
///
/// Incompressible data (media, archives, encrypted files) is detected on an
/// 8 KiB sample first and kept raw without compressing the whole block, which
/// roughly doubles throughput on such data; a block that only compresses
/// after its first 8 KiB stays raw, which costs bytes, never correctness.
pub fn encode_owned(data: Vec<u8>) -> EncodedBlock {
    let id = BlockId::of(&data);
    let len = u32::try_from(data.len()).expect("block larger than 4 GiB");
    let raw = |data| EncodedBlock { id, len, encoding: BlockEncoding::Raw, bytes: data };
    if data.len() > 2 * SAMPLE {
        match zstd::bulk::compress(&data[..SAMPLE], ZSTD_LEVEL) {
            Ok(z) if z.len() * 100 < SAMPLE * 97 => {}
            _ => return raw(data),
        }
    }
    match zstd::bulk::compress(&data, ZSTD_LEVEL) {
        Ok(z) if z.len() < data.len() => EncodedBlock { id, len, encoding: BlockEncoding::Zstd, bytes: z },
        _ => raw(data),
    }
}

/// Why an encoded block was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("block is larger than {MAX_BLOCK_SIZE} bytes")]
    TooLarge,
    #[error("the blocks expand to more than one request may hold: send fewer at a time")]
    OverBudget,
    #[error("block is not a valid zstd frame: {0}")]
    Zstd(std::io::Error),
    #[error("block content does not match its id (expected {expected}, got {actual})")]
    HashMismatch { expected: BlockId, actual: BlockId },
}

/// Decodes a block and checks that its plaintext hashes to `expected`.
/// Never returns more than [`MAX_BLOCK_SIZE`] bytes, whatever the input claims.
pub fn decode(expected: &BlockId, encoding: BlockEncoding, bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut unlimited = usize::MAX;
    decode_within(expected, encoding, bytes, &mut unlimited)
}

/// [`decode`], taking the plaintext's bytes from `budget` (what is left of
/// a request's): a block that would go past it is refused before it is
/// expanded past it, so many small frames of zeros cost no more than the
/// budget however far each would expand.
pub fn decode_within(
    expected: &BlockId,
    encoding: BlockEncoding,
    bytes: &[u8],
    budget: &mut usize,
) -> Result<Vec<u8>, DecodeError> {
    let most = MAX_BLOCK_SIZE.min(*budget);
    let refuse = || if most < MAX_BLOCK_SIZE { DecodeError::OverBudget } else { DecodeError::TooLarge };
    let plain = match encoding {
        BlockEncoding::Raw => {
            if bytes.len() > most {
                return Err(refuse());
            }
            bytes.to_vec()
        }
        BlockEncoding::Zstd => decompress_bounded(bytes, most).map_err(|e| match e {
            DecodeError::TooLarge => refuse(),
            e => e,
        })?,
    };
    *budget -= plain.len();
    let actual = BlockId::of(&plain);
    if actual != *expected {
        return Err(DecodeError::HashMismatch { expected: *expected, actual });
    }
    Ok(plain)
}

fn decompress_bounded(bytes: &[u8], most: usize) -> Result<Vec<u8>, DecodeError> {
    use std::io::Read;
    let mut decoder = zstd::stream::read::Decoder::new(bytes).map_err(DecodeError::Zstd)?;
    let mut out = Vec::new();
    let n = (&mut decoder).take(most as u64 + 1).read_to_end(&mut out).map_err(DecodeError::Zstd)?;
    if n > most {
        return Err(DecodeError::TooLarge);
    }
    Ok(out)
}

/// Most bytes in one batch of blocks (`POST /blocks/batch`, `/blocks/fetch`).
pub const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;
/// Most blocks in one batch.
pub const MAX_BATCH_BLOCKS: usize = 4096;
/// Most bytes the blocks of one upload batch may expand to (the client
/// sends 4 MiB of blocks a batch, or one larger block alone).
pub const MAX_BATCH_PLAIN_BYTES: usize = 64 * 1024 * 1024;

/// Bytes a frame holds before its block's: id, encoding and length.
pub const FRAME_HEADER: usize = 32 + 1 + 4;

/// Appends one block to a batch body: id (32 bytes) | encoding (1 byte: 0 raw,
/// 1 zstd) | length (u32 LE) | the encoded bytes.
pub fn write_frame(out: &mut Vec<u8>, id: &BlockId, encoding: BlockEncoding, bytes: &[u8]) {
    out.extend_from_slice(id.as_bytes());
    out.push(match encoding {
        BlockEncoding::Raw => 0,
        BlockEncoding::Zstd => 1,
    });
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A batch body that is not a sequence of frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed block batch at byte {0} (truncated, or more than 4096 blocks)")]
pub struct BadFrame(pub usize);

/// One frame of a batch: the block id, its encoding and its encoded bytes.
pub type Frame<'a> = (BlockId, BlockEncoding, &'a [u8]);

/// Splits a batch body into its frames (no decoding or verification yet).
pub fn read_frames(mut buf: &[u8]) -> Result<Vec<Frame<'_>>, BadFrame> {
    let total = buf.len();
    let mut out = Vec::new();
    while !buf.is_empty() {
        let at = total - buf.len();
        if buf.len() < FRAME_HEADER || out.len() >= MAX_BATCH_BLOCKS {
            // Truncated, or more blocks than one batch may hold.
            return Err(BadFrame(at));
        }
        let id = BlockId::from_slice(&buf[..32]).expect("32 bytes");
        let encoding = match buf[32] {
            0 => BlockEncoding::Raw,
            1 => BlockEncoding::Zstd,
            _ => return Err(BadFrame(at)),
        };
        let len = u32::from_le_bytes(buf[33..FRAME_HEADER].try_into().expect("4 bytes")) as usize;
        let rest = &buf[FRAME_HEADER..];
        if rest.len() < len {
            return Err(BadFrame(at));
        }
        out.push((id, encoding, &rest[..len]));
        buf = &rest[len..];
    }
    Ok(out)
}

/// A block list in its compact stored form: 36 bytes a block (the id, then
/// the plaintext size as u32 LE). Used by the server's and the client's
/// databases.
pub fn encode_list(blocks: impl IntoIterator<Item = (BlockId, u32)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, size) in blocks {
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&size.to_le_bytes());
    }
    out
}

/// Reads what [`encode_list`] wrote (a trailing partial record is ignored).
pub fn decode_list(blob: &[u8]) -> Vec<(BlockId, u32)> {
    blob.chunks_exact(36)
        .map(|c| {
            let id = BlockId::from_slice(&c[..32]).expect("32 bytes");
            (id, u32::from_le_bytes(c[32..].try_into().expect("4 bytes")))
        })
        .collect()
}

/// Content hash of a file revision: BLAKE3 over the file size and its block
/// ids in order. The server computes it from the block list (it never trusts a
/// client-given hash); a client computes the same from its own chunking.
pub fn content_hash<'a>(size: u64, blocks: impl IntoIterator<Item = &'a BlockId>) -> String {
    hex::encode(content_digest(size, blocks))
}

/// True for a content hash as the server spells it: 64 hex digits, or
/// empty (a folder has none).
pub fn is_content_hash(s: &str) -> bool {
    s.is_empty() || (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// [`content_hash`] as 32 raw bytes.
pub fn content_digest<'a>(size: u64, blocks: impl IntoIterator<Item = &'a BlockId>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"ferry-content-v1");
    h.update(&size.to_le_bytes());
    for b in blocks {
        h.update(&b.0);
    }
    *h.finalize().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_text_and_random() {
        let text = b"hello hello hello hello hello hello hello hello".repeat(100);
        let e = encode(&text);
        assert_eq!(e.encoding, BlockEncoding::Zstd);
        assert!(e.bytes.len() < text.len());
        assert_eq!(decode(&e.id, e.encoding, &e.bytes).unwrap(), text);

        let random: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let e = encode(&random);
        assert_eq!(decode(&e.id, e.encoding, &e.bytes).unwrap(), random);
    }

    #[test]
    fn rejects_wrong_content_and_bombs() {
        let e = encode(b"abc");
        let other = BlockId::of(b"abd");
        assert!(matches!(decode(&other, e.encoding, &e.bytes), Err(DecodeError::HashMismatch { .. })));
        assert!(matches!(decode(&e.id, BlockEncoding::Zstd, b"not zstd"), Err(DecodeError::Zstd(_))));
        let zeros = vec![0u8; MAX_BLOCK_SIZE + 10];
        let bomb = zstd::bulk::compress(&zeros, 1).unwrap();
        assert!(matches!(decode(&BlockId::of(&zeros), BlockEncoding::Zstd, &bomb), Err(DecodeError::TooLarge)));
    }

    #[test]
    fn frames_roundtrip_and_reject_garbage() {
        let (a, b) = (encode(b"first"), encode(&[7u8; 5000]));
        let mut body = Vec::new();
        write_frame(&mut body, &a.id, a.encoding, &a.bytes);
        write_frame(&mut body, &b.id, b.encoding, &b.bytes);
        let frames = read_frames(&body).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(decode(&frames[1].0, frames[1].1, frames[1].2).unwrap(), vec![7u8; 5000]);
        assert!(read_frames(&body[..body.len() - 1]).is_err());
        assert!(read_frames(&[0u8; 10]).is_err());
        assert_eq!(read_frames(&[]).unwrap().len(), 0);
    }

    #[test]
    fn block_list_roundtrip() {
        let list = vec![(BlockId::of(b"a"), 1), (BlockId::of(b"bb"), 2)];
        assert_eq!(decode_list(&encode_list(list.clone())), list);
        assert!(decode_list(&[]).is_empty());
    }

    #[test]
    fn id_hex_roundtrip() {
        let id = BlockId::of(b"x");
        assert_eq!(id.to_hex().parse::<BlockId>().unwrap(), id);
        assert!("zz".parse::<BlockId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<BlockId>(&json).unwrap(), id);
    }
}
