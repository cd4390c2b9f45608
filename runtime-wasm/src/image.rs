//! Image references and fetching: what an `image:` string names (a local
//! path or `file://` URL, an `https://` URL, an OCI reference), the pull
//! policy, and the on-disk store of fetched blobs (content-addressed by
//! sha256) with the reference → digest map that makes `IfNotPresent` and
//! `Never` work across restarts. Registry protocol details are in `oci.rs`;
//! compilation in `compile.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::{PullOptions, PullPolicy, WasmError};

/// What an `image:` string names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ImageRef {
    /// A file on this machine (`.wasm` binary or `.wat` text).
    Local(PathBuf),
    /// An `https://` (or `http://`) URL of a `.wasm`/`.wat` file.
    Url(String),
    /// An OCI registry reference.
    Oci(String),
}

/// Classifies `image`, resolving relative paths against `base_dir`.
pub(crate) fn parse(image: &str, base_dir: Option<&Path>) -> Result<ImageRef, WasmError> {
    let invalid = |reason: &str| WasmError::InvalidImage {
        image: image.to_string(),
        reason: reason.to_string(),
    };
    let image_trimmed = image.trim();
    if image_trimmed.is_empty() {
        return Err(invalid("empty image"));
    }
    if let Some(path) = image_trimmed.strip_prefix("file://") {
        return Ok(ImageRef::Local(resolve_path(path, base_dir)));
    }
    if image_trimmed.starts_with("https://") || image_trimmed.starts_with("http://") {
        return Ok(ImageRef::Url(image_trimmed.to_string()));
    }
    if is_path_like(image_trimmed) {
        return Ok(ImageRef::Local(resolve_path(image_trimmed, base_dir)));
    }
    if image_trimmed.contains("://") {
        return Err(invalid("unsupported URL scheme"));
    }
    Ok(ImageRef::Oci(image_trimmed.to_string()))
}

/// True for strings that can only be file paths: absolute or `./`-relative
/// paths, and names ending in `.wasm` / `.wat`.
pub(crate) fn is_path_like(image: &str) -> bool {
    image.starts_with('/')
        || image.starts_with("./")
        || image.starts_with("../")
        || has_wasm_extension(image)
        || (cfg!(windows) && image.get(1..3) == Some(":\\"))
}

pub(crate) fn has_wasm_extension(image: &str) -> bool {
    let lower = image.to_ascii_lowercase();
    lower.ends_with(".wasm") || lower.ends_with(".wat")
}

fn resolve_path(path: &str, base_dir: Option<&Path>) -> PathBuf {
    let p = PathBuf::from(path);
    match base_dir {
        Some(base) if p.is_relative() => base.join(p),
        _ => p,
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The hex part of a `sha256:<hex>` digest, if it is one.
pub(crate) fn digest_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// Where the bytes of a resolved image are.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    /// Already in memory.
    Bytes(Vec<u8>),
    /// In a file whose content has the resolved digest.
    File(PathBuf),
}

/// An image resolved to its content digest.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub digest: String,
    pub content: Content,
    /// The content is wasm text (`.wat`).
    pub text: bool,
}

impl Resolved {
    /// The content's bytes, checked against the digest.
    pub(crate) fn bytes(&self, image: &str) -> Result<Vec<u8>, WasmError> {
        let bytes = match &self.content {
            Content::Bytes(b) => return Ok(b.clone()),
            Content::File(path) => std::fs::read(path).map_err(|source| WasmError::Io {
                context: format!("reading {}", path.display()),
                source,
            })?,
        };
        let actual = sha256_digest(&bytes);
        if actual != self.digest {
            return Err(WasmError::DigestMismatch {
                image: image.to_string(),
                expected: self.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }
}

/// Fetched blobs and reference → digest records under the cache directory,
/// plus a memo of local files' digests keyed by (size, mtime).
pub(crate) struct ImageStore {
    blobs_dir: PathBuf,
    refs_dir: PathBuf,
    local_memo: Mutex<HashMap<PathBuf, (u64, SystemTime, String)>>,
}

impl ImageStore {
    pub(crate) fn new(cache_dir: &Path) -> ImageStore {
        ImageStore {
            blobs_dir: cache_dir.join("blobs").join("sha256"),
            refs_dir: cache_dir.join("refs"),
            local_memo: Mutex::new(HashMap::new()),
        }
    }

    /// Resolves a local file: re-reads it only when its size or mtime changed.
    pub(crate) fn resolve_local(&self, image: &str, path: &Path) -> Result<Resolved, WasmError> {
        let text = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("wat"));
        let meta = std::fs::metadata(path).map_err(|e| WasmError::Pull {
            image: image.to_string(),
            reason: format!("{}: {e}", path.display()),
        })?;
        let stamp = (
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        if let Some((len, mtime, digest)) = self.memo().get(path)
            && (*len, *mtime) == stamp
        {
            return Ok(Resolved {
                digest: digest.clone(),
                content: Content::File(path.to_path_buf()),
                text,
            });
        }
        let bytes = std::fs::read(path).map_err(|e| WasmError::Pull {
            image: image.to_string(),
            reason: format!("{}: {e}", path.display()),
        })?;
        let digest = sha256_digest(&bytes);
        self.memo()
            .insert(path.to_path_buf(), (stamp.0, stamp.1, digest.clone()));
        Ok(Resolved {
            digest,
            content: Content::Bytes(bytes),
            text,
        })
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (u64, SystemTime, String)>> {
        self.local_memo.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The recorded digest of a remote reference whose blob is present.
    pub(crate) fn lookup(&self, reference: &str) -> Option<String> {
        let digest = std::fs::read_to_string(self.ref_path(reference)).ok()?;
        let digest = digest.trim().to_string();
        self.blob_path(&digest)
            .filter(|p| p.exists())
            .map(|_| digest)
    }

    /// Records that `reference` currently resolves to `digest`.
    pub(crate) fn record(&self, reference: &str, digest: &str) -> Result<(), WasmError> {
        write_atomic(&self.ref_path(reference), digest.as_bytes())
    }

    /// The path of the blob with `digest` (whether present or not).
    pub(crate) fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        digest_hex(digest).map(|hex| self.blobs_dir.join(hex))
    }

    /// Stores `bytes` as the blob with their digest and returns it.
    pub(crate) fn put_blob(&self, bytes: &[u8]) -> Result<String, WasmError> {
        let digest = sha256_digest(bytes);
        if let Some(path) = self.blob_path(&digest)
            && !path.exists()
        {
            write_atomic(&path, bytes)?;
        }
        Ok(digest)
    }

    /// A resolved image for a stored blob.
    pub(crate) fn resolved_blob(&self, digest: &str, text: bool) -> Option<Resolved> {
        let path = self.blob_path(digest)?;
        Some(Resolved {
            digest: digest.to_string(),
            content: Content::File(path),
            text,
        })
    }

    fn ref_path(&self, reference: &str) -> PathBuf {
        let key = sha256_digest(reference.as_bytes());
        self.refs_dir.join(&key[7..])
    }

    /// Resolves an `https://` URL per the pull policy.
    pub(crate) async fn resolve_url(
        &self,
        image: &str,
        url: &str,
        options: &PullOptions,
    ) -> Result<Resolved, WasmError> {
        let text = url
            .split(['?', '#'])
            .next()
            .is_some_and(|p| p.to_ascii_lowercase().ends_with(".wat"));
        if options.policy != PullPolicy::Always
            && let Some(digest) = self.lookup(url)
            && let Some(r) = self.resolved_blob(&digest, text)
        {
            return Ok(r);
        }
        if options.policy == PullPolicy::Never {
            return Err(WasmError::NotPresent {
                image: image.to_string(),
            });
        }
        let pull_err = |reason: String| WasmError::Pull {
            image: image.to_string(),
            reason,
        };
        crate::oci::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| pull_err(format!("http client: {e}")))?;
        let mut req = client.get(url);
        if let Some((user, pass)) = &options.auth {
            req = req.basic_auth(user, Some(pass));
        }
        let resp = req.send().await.map_err(|e| pull_err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(pull_err(format!("HTTP {}", resp.status())));
        }
        let bytes = resp.bytes().await.map_err(|e| pull_err(e.to_string()))?;
        let digest = self.put_blob(&bytes)?;
        self.record(url, &digest)?;
        Ok(Resolved {
            digest,
            content: Content::Bytes(bytes.to_vec()),
            text,
        })
    }
}

/// Writes a file via a temporary sibling and a rename, creating parents.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WasmError> {
    let io = |context: String| move |source| WasmError::Io { context, source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("renaming to {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_image_strings() {
        let base = Path::new("/base");
        assert_eq!(
            parse("samples/wasm/hello.wasm", Some(base)).ok(),
            Some(ImageRef::Local("/base/samples/wasm/hello.wasm".into()))
        );
        assert_eq!(
            parse("file:///x/y.wat", None).ok(),
            Some(ImageRef::Local("/x/y.wat".into()))
        );
        assert_eq!(
            parse("https://h/x.wasm", None).ok(),
            Some(ImageRef::Url("https://h/x.wasm".into()))
        );
        assert_eq!(
            parse("localhost:5000/hello:v1", None).ok(),
            Some(ImageRef::Oci("localhost:5000/hello:v1".into()))
        );
        assert!(parse("ftp://x", None).is_err());
        assert!(parse("  ", None).is_err());
    }

    #[test]
    fn digests_are_sha256_hex() {
        let d = sha256_digest(b"");
        assert_eq!(
            d,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(digest_hex(&d).is_some());
        assert!(digest_hex("sha256:zz").is_none());
    }
}
