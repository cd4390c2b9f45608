//! Pulling wasm artifacts from OCI registries with `oci-client`: resolve
//! the manifest (preferring a `wasm` platform in an image index), find the
//! wasm layer (`application/wasm`, CNCF wasm artifact, wasm-to-oci and
//! runwasi layer types), download it with its digest verified, and store it
//! in the image store. An image without a wasm layer is `NotWasm`, so the
//! node can hand it to the OCI runtime.

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::ImageIndexEntry;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::image::{ImageStore, Resolved, sha256_digest};
use crate::{PullOptions, PullPolicy, WasmError};

/// Layer media types that carry a wasm module or component.
const WASM_LAYER_TYPES: &[&str] = &[
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.module.wasm.content.layer.v1+wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
];

/// Installs rustls' ring provider as the process default (once).
pub(crate) fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Resolves an OCI reference per the pull policy into a stored wasm blob.
pub(crate) async fn resolve(
    store: &ImageStore,
    image: &str,
    options: &PullOptions,
    insecure_registries: &[String],
) -> Result<Resolved, WasmError> {
    let pull_err = |reason: String| WasmError::Pull {
        image: image.to_string(),
        reason,
    };
    let reference: Reference = image.parse().map_err(|e| WasmError::InvalidImage {
        image: image.to_string(),
        reason: format!("{e}"),
    })?;
    let key = reference.whole();
    if options.policy != PullPolicy::Always
        && let Some(digest) = store.lookup(&key)
        && let Some(r) = store.resolved_blob(&digest, false)
    {
        return Ok(r);
    }
    if options.policy == PullPolicy::Never {
        return Err(WasmError::NotPresent {
            image: image.to_string(),
        });
    }

    ensure_crypto_provider();
    let registry = reference.registry().to_string();
    let plain_http = is_loopback_registry(&registry) || insecure_registries.contains(&registry);
    let config = ClientConfig {
        protocol: if plain_http {
            ClientProtocol::HttpsExcept(vec![
                registry.clone(),
                reference.resolve_registry().to_string(),
            ])
        } else {
            ClientProtocol::Https
        },
        platform_resolver: Some(Box::new(wasm_platform_resolver)),
        ..Default::default()
    };
    let client = Client::new(config);
    let auth = match &options.auth {
        Some((user, pass)) => RegistryAuth::Basic(user.clone(), pass.clone()),
        None => RegistryAuth::Anonymous,
    };

    let (manifest, manifest_digest) = client
        .pull_image_manifest(&reference, &auth)
        .await
        .map_err(|e| pull_err(format!("manifest: {e}")))?;
    if let Some(expected) = reference.digest()
        && expected != manifest_digest
    {
        return Err(WasmError::DigestMismatch {
            image: image.to_string(),
            expected: expected.to_string(),
            actual: manifest_digest,
        });
    }
    let Some(layer) = manifest
        .layers
        .iter()
        .find(|l| WASM_LAYER_TYPES.contains(&l.media_type.as_str()))
    else {
        return Err(WasmError::NotWasm {
            image: image.to_string(),
        });
    };

    let digest = layer.digest.clone();
    if !store.blob_path(&digest).is_some_and(|p| p.exists()) {
        let mut bytes = Vec::with_capacity(usize::try_from(layer.size).unwrap_or(0));
        client
            .pull_blob(&reference, layer, &mut bytes)
            .await
            .map_err(|e| pull_err(format!("layer {digest}: {e}")))?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(WasmError::DigestMismatch {
                image: image.to_string(),
                expected: digest,
                actual,
            });
        }
        store.put_blob(&bytes)?;
    }
    store.record(&key, &digest)?;
    tracing::info!(image, %digest, "pulled wasm artifact");
    store
        .resolved_blob(&digest, false)
        .ok_or_else(|| WasmError::InvalidImage {
            image: image.to_string(),
            reason: format!("layer digest {digest} is not sha256"),
        })
}

/// Registries on this machine are reached over plain HTTP.
fn is_loopback_registry(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

/// Picks a `wasm` platform from an image index, else this machine's.
fn wasm_platform_resolver(entries: &[ImageIndexEntry]) -> Option<String> {
    entries
        .iter()
        .find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| p.architecture.to_string() == "wasm")
        })
        .map(|e| e.digest.clone())
        .or_else(|| oci_client::client::current_platform_resolver(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_use_plain_http() {
        assert!(is_loopback_registry("localhost:5000"));
        assert!(is_loopback_registry("127.0.0.1:5000"));
        assert!(!is_loopback_registry("ghcr.io"));
    }
}
