//! Blocks in an S3-compatible bucket, through `object_store`: the same
//! layout as the folder store under an optional prefix, `blocks/ab/cd/<hex
//! id>` for a block on its own and `packs/<016x>.pack` for a pack (one PUT
//! per pack; a packed block is read with a ranged GET).
//!
//! Objects are immutable: every one is created with `If-None-Match: *`
//! ([`PutMode::Create`]), so nothing is ever overwritten. A loose block
//! found present counts as stored (same id, same content). Unlike the
//! folder store, which rewrites a present block so that timing reveals
//! nothing, this is a conditional create: the whole body is still sent, but
//! the bucket may answer a little sooner when the object exists. A pack id
//! found taken (a retried create that had landed, or a random collision) is
//! written again under a new id; the other copy is garbage for the
//! collector.
//!
//! Requests are signed without hashing their bodies (`UNSIGNED-PAYLOAD`):
//! what the bucket holds is sealed, so the seal, not the signature, is
//! what tells a changed byte.
//!
//! Timeouts and retries suit an interactive service ([`Limits`]): an
//! unreachable bucket is an error within seconds, not after `object_store`'s
//! three minutes of retries, and every failure is an `io::Error` (the API
//! answers 503), never "not stored".

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};

use ferry_shared::BlockId;

use super::{BlockLoc, BlockStore, Object};

/// Where the blocks are: `s3://BUCKET?endpoint=URL&region=R&prefix=P`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Spec {
    pub bucket: String,
    /// `http(s)://HOST:PORT` of an S3-compatible service; none: AWS (or
    /// `AWS_ENDPOINT`).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Folder in the bucket that holds `blocks/` and `packs/` (no leading
    /// or trailing slash); none: the bucket's top.
    pub prefix: Option<String>,
}

impl S3Spec {
    const FORM: &str =
        "s3://BUCKET?endpoint=http://HOST:PORT&region=REGION&prefix=FOLDER (all but the bucket optional)";

    /// Parses `s3://BUCKET[?endpoint=…&region=…&prefix=…]` (values may be
    /// percent-encoded).
    pub fn parse(spec: &str) -> anyhow::Result<S3Spec> {
        let Some(rest) = spec.strip_prefix("s3://") else { bail!("{spec:?} is no S3 location: give {}", Self::FORM) };
        let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
        let bucket = bucket.strip_suffix('/').unwrap_or(bucket);
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid_bucket {
            bail!(
                "{bucket:?} in {spec:?} is no bucket name (3 to 63 lowercase letters, digits, dots and hyphens; \
                 a prefix goes in &prefix=): give {}",
                Self::FORM
            );
        }
        let mut out = S3Spec { bucket: bucket.to_owned(), endpoint: None, region: None, prefix: None };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .with_context(|| format!("the value of {key} in {spec:?} is not UTF-8"))?
                .into_owned();
            if value.is_empty() {
                bail!("{key} in {spec:?} has no value: give {}", Self::FORM);
            }
            let slot = match key {
                "endpoint" => {
                    if !(value.starts_with("http://") || value.starts_with("https://")) {
                        bail!("endpoint {value:?} in {spec:?} must start with http:// or https://");
                    }
                    &mut out.endpoint
                }
                "region" => &mut out.region,
                "prefix" => {
                    let trimmed = value.trim_matches('/');
                    let valid = !trimmed.is_empty()
                        && trimmed.split('/').all(|s| {
                            !s.is_empty()
                                && s != "."
                                && s != ".."
                                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                        });
                    if !valid {
                        bail!(
                            "prefix {value:?} in {spec:?} must be folder names of letters, digits, '.', '_' and '-' \
                             separated by '/'"
                        );
                    }
                    out.prefix = Some(trimmed.to_owned());
                    continue;
                }
                other => bail!("unknown setting {other:?} in {spec:?}: give {}", Self::FORM),
            };
            if slot.replace(value).is_some() {
                bail!("{key} is given twice in {spec:?}");
            }
        }
        Ok(out)
    }
}

/// How long the store waits for the bucket. The defaults fit an
/// interactive service: a request that hangs ends after 30 s, a host that
/// does not answer after 5 s, and retries (of failed connections, 5xx and
/// throttling answers) stop after 3 or 10 s, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_retries: usize,
    pub retry_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_retries: 3,
            retry_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Clone)]
pub struct S3BlockStore {
    store: Arc<AmazonS3>,
    /// The prefix, with its trailing slash ("" at the bucket's top).
    root: Arc<str>,
    /// `s3://bucket/prefix`, for error messages.
    name: Arc<str>,
}

impl S3BlockStore {
    /// A store for `spec` with credentials from the standard `AWS_*`
    /// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// …); what `spec` gives wins. Does not touch the network: see
    /// [`S3BlockStore::check`].
    pub fn from_env(spec: &S3Spec) -> anyhow::Result<Self> {
        Self::new(AmazonS3Builder::from_env(), spec, Limits::default())
    }

    /// A store for `spec` on top of `builder` (which holds credentials).
    /// The limits replace any from the environment; other client settings
    /// (a proxy, say) are kept.
    pub fn new(builder: AmazonS3Builder, spec: &S3Spec, limits: Limits) -> anyhow::Result<Self> {
        let duration = |d: Duration| format!("{}ms", d.as_millis());
        let mut builder = builder
            .with_bucket_name(&spec.bucket)
            // (A SHA-256 of each body costs both ends a pass over every
            // byte: a twentieth of the machine in a drop through s3s-fs.)
            .with_unsigned_payload(true)
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), duration(limits.request_timeout))
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout), duration(limits.connect_timeout))
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: limits.max_retries,
                retry_timeout: limits.retry_timeout,
            });
        if let Some(endpoint) = &spec.endpoint {
            builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &spec.region {
            builder = builder.with_region(region);
        }
        let store = builder.build().with_context(|| format!("configuring S3 bucket {}", spec.bucket))?;
        let root = spec.prefix.as_ref().map(|p| format!("{p}/")).unwrap_or_default();
        let name = format!("s3://{}/{root}", spec.bucket);
        Ok(S3BlockStore { store: Arc::new(store), root: root.into(), name: name.into() })
    }

    /// Reads one page of the listing: the bucket is reachable, the
    /// credentials are accepted and listing is allowed.
    pub async fn check(&self) -> io::Result<()> {
        self.store
            .list_with_delimiter(Some(&Path::from(self.root.as_ref())))
            .await
            .map(|_| ())
            .map_err(|e| self.error("listing", "", e))
    }

    fn loose_path(&self, id: &BlockId) -> Path {
        let hex = id.to_hex();
        Path::from(format!("{}blocks/{}/{}/{hex}", self.root, &hex[..2], &hex[2..4]))
    }

    fn pack_path(&self, pack: u64) -> Path {
        Path::from(format!("{}packs/{pack:016x}.pack", self.root))
    }

    fn path_of(&self, object: Object) -> Path {
        match object {
            Object::Loose(id) => self.loose_path(&id),
            Object::Pack(pack) => self.pack_path(pack),
        }
    }

    /// The object at `location`, if it is one of ours.
    fn object_at(root: &str, location: &Path) -> Option<Object> {
        let rest = location.as_ref().strip_prefix(root)?;
        if let Some(name) = rest.strip_prefix("packs/") {
            let hex = name.strip_suffix(".pack").filter(|h| h.len() == 16)?;
            return u64::from_str_radix(hex, 16).ok().map(Object::Pack);
        }
        let rest = rest.strip_prefix("blocks/")?;
        let id: BlockId = rest.rsplit('/').next()?.parse().ok()?;
        // Only where `delete` would look for it (else it would be listed forever).
        let hex = id.to_hex();
        (rest == format!("{}/{}/{hex}", &hex[..2], &hex[2..4])).then_some(Object::Loose(id))
    }

    /// An `object_store` failure as an `io::Error` that names the bucket
    /// (never of kind `NotFound`: what is missing is answered `None`).
    fn error(&self, doing: &str, path: &str, e: object_store::Error) -> io::Error {
        io::Error::other(format!("S3 block store {}{path}: {doing}: {e}", self.name))
    }

    /// Creates `location` unless it exists; `Ok(false)` when it does.
    async fn create(&self, location: &Path, payload: PutPayload) -> io::Result<bool> {
        match self.store.put_opts(location, payload, PutOptions::from(PutMode::Create)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.error("writing", self.relative(location), e)),
        }
    }

    fn relative<'a>(&self, location: &'a Path) -> &'a str {
        location.as_ref().strip_prefix(self.root.as_ref()).unwrap_or(location.as_ref())
    }

    /// Ranges of one object, in one request where they lie near each other
    /// (`None` when the object is missing); each must be read whole.
    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> io::Result<Option<Vec<Bytes>>> {
        match self.store.get_ranges(location, ranges).await {
            Ok(parts) => {
                for (b, r) in parts.iter().zip(ranges) {
                    let want = r.end - r.start;
                    if b.len() as u64 != want {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "S3 block store {}{}: {} bytes read of {want}",
                                self.name,
                                self.relative(location),
                                b.len()
                            ),
                        ));
                    }
                }
                Ok(Some(parts))
            }
            Err(e) if is_missing_object(&e) => Ok(None),
            Err(e) => Err(self.error("reading", self.relative(location), e)),
        }
    }
}

/// A 404 for the object, not for the bucket: a bucket deleted or renamed
/// under a running server is an outage, not every block missing. (S3 says
/// `NoSuchBucket` in the body, which `object_store` keeps in the message;
/// s3s-fs 0.14 answers `NoSuchKey` either way.)
fn is_missing_object(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. }) && !format!("{e}").contains("NoSuchBucket")
}

impl BlockStore for S3BlockStore {
    fn put(&self, id: BlockId, sealed: Vec<u8>) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            // Present already: the same id is the same content.
            self.create(&self.loose_path(&id), sealed.into()).await.map(|_| ())
        })
    }

    fn put_pack(&self, sealed: Vec<Vec<u8>>) -> BoxFuture<'_, io::Result<Vec<BlockLoc>>> {
        Box::pin(async move {
            let mut offset = 0u64;
            let mut lens = Vec::with_capacity(sealed.len());
            for s in &sealed {
                lens.push((offset, s.len() as u32));
                offset += s.len() as u64;
            }
            // Shared, not copied, by the retries below.
            let payload: PutPayload = sealed.into_iter().map(Bytes::from).collect();
            for _ in 0..3 {
                let pack: u64 = rand::random();
                if self.create(&self.pack_path(pack), payload.clone()).await? {
                    return Ok(lens.iter().map(|&(offset, len)| BlockLoc::Packed { pack, offset, len }).collect());
                }
            }
            Err(io::Error::other(format!(
                "S3 block store {}: three new pack ids in a row were taken (is another server writing \
                 with the same ids?)",
                self.name
            )))
        })
    }

    fn get_many(&self, wanted: Vec<(BlockId, BlockLoc)>) -> BoxFuture<'_, io::Result<Vec<Option<Vec<u8>>>>> {
        Box::pin(async move {
            // Loose blocks one GET each; the blocks of a pack in one
            // `get_ranges` (which joins near ranges into one ranged GET).
            let mut loose = Vec::new();
            let mut packs: std::collections::BTreeMap<u64, Vec<(usize, Range<u64>)>> = Default::default();
            for (i, (id, loc)) in wanted.iter().enumerate() {
                match *loc {
                    BlockLoc::Loose => loose.push((i, *id)),
                    BlockLoc::Packed { pack, offset, len } => {
                        packs.entry(pack).or_default().push((i, offset..offset + u64::from(len)))
                    }
                }
            }
            let mut out: Vec<Option<Vec<u8>>> = vec![None; wanted.len()];
            let loose_reads = futures_util::stream::iter(loose)
                .map(|(i, id)| async move { Ok::<_, io::Error>((i, self.get(id, BlockLoc::Loose).await?)) })
                .buffer_unordered(super::READS_AT_ONCE);
            let mut loose_reads = std::pin::pin!(loose_reads);
            while let Some(r) = loose_reads.next().await {
                let (i, got) = r?;
                out[i] = got;
            }
            let pack_reads = futures_util::stream::iter(packs)
                .map(|(pack, blocks)| async move {
                    let ranges: Vec<Range<u64>> = blocks.iter().map(|(_, r)| r.clone()).collect();
                    let parts = self.get_ranges(&self.pack_path(pack), &ranges).await?;
                    Ok::<_, io::Error>(match parts {
                        Some(parts) => blocks.into_iter().zip(parts).map(|((i, _), b)| (i, Some(b.to_vec()))).collect(),
                        None => blocks.into_iter().map(|(i, _)| (i, None)).collect::<Vec<_>>(),
                    })
                })
                .buffer_unordered(super::READS_AT_ONCE);
            let mut pack_reads = std::pin::pin!(pack_reads);
            while let Some(r) = pack_reads.next().await {
                for (i, got) in r? {
                    out[i] = got;
                }
            }
            Ok(out)
        })
    }

    fn get(&self, id: BlockId, loc: BlockLoc) -> BoxFuture<'_, io::Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            let got = match loc {
                BlockLoc::Loose => {
                    let location = self.loose_path(&id);
                    match self.store.get(&location).await {
                        Ok(r) => Some(r.bytes().await.map_err(|e| self.error("reading", self.relative(&location), e))?),
                        Err(e) if is_missing_object(&e) => None,
                        Err(e) => return Err(self.error("reading", self.relative(&location), e)),
                    }
                }
                BlockLoc::Packed { pack, offset, len } => {
                    let range = offset..offset + u64::from(len);
                    self.get_ranges(&self.pack_path(pack), &[range]).await?.and_then(|mut parts| parts.pop())
                }
            };
            Ok(got.map(Vec::from))
        })
    }

    fn delete(&self, object: Object) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            let location = self.path_of(object);
            match self.store.delete(&location).await {
                Ok(()) => Ok(()),
                Err(e) if is_missing_object(&e) => Ok(()),
                Err(e) => Err(self.error("deleting", self.relative(&location), e)),
            }
        })
    }

    fn list(&self) -> BoxStream<'static, io::Result<Object>> {
        // Page by page as the stream is read: memory stays one page.
        let listing = |folder: &str| {
            let me = self.clone();
            let prefix = Path::from(format!("{}{folder}", self.root));
            self.store.list(Some(&prefix)).filter_map(move |meta| {
                let out = match meta {
                    Ok(meta) => S3BlockStore::object_at(&me.root, &meta.location).map(Ok),
                    Err(e) => Some(Err(me.error("listing", "", e))),
                };
                std::future::ready(out)
            })
        };
        Box::pin(listing("packs").chain(listing("blocks")))
    }
}

#[cfg(test)]
mod tests;
