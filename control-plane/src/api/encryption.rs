//! Encryption at rest of the resources an EncryptionConfiguration would list
//! (here: `secrets`), in the format of kube-apiserver's `aesgcm` provider:
//! `k8s:enc:aesgcm:v1:key1:` + a random 12-byte nonce + the AES-256-GCM
//! ciphertext and tag, with the storage key as additional authenticated
//! data (so a value cannot be moved to another key). A value without the
//! prefix is plaintext written before encryption was enabled and reads as
//! it is; it is encrypted on its next write.
//!
//! The key is made and kept by `pki` (`DATA_DIR/pki/encryption.key`); the
//! only caller is `objects`, where objects become store bytes and back.

use std::borrow::Cow;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};

use super::error::ApiError;
use super::registry::ResourceInfo;
use crate::pki::ENCRYPTION_KEY_LEN;

/// The resources whose values are encrypted, as (API group, plural).
const ENCRYPTED: &[(&str, &str)] = &[("", "secrets")];
/// What every value of this provider and key starts with.
const PREFIX: &[u8] = b"k8s:enc:aesgcm:v1:key1:";
/// What any provider's encrypted value starts with.
const ANY_PROVIDER: &[u8] = b"k8s:enc:";

/// Seals and opens stored values with the cluster's at-rest key.
pub struct Encryption {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption").finish_non_exhaustive()
    }
}

impl Encryption {
    /// An AES-256-GCM transformer over `key`.
    pub fn new(key: &[u8; ENCRYPTION_KEY_LEN]) -> Result<Encryption, ApiError> {
        let key = UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| ApiError::Internal("the at-rest encryption key is unusable".into()))?;
        Ok(Encryption {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }

    /// Whether values of this resource are encrypted when written.
    pub fn encrypts(info: &ResourceInfo) -> bool {
        ENCRYPTED.contains(&(info.group, info.plural))
    }

    /// The bytes to store for `plain` at storage key `key`: encrypted for
    /// the resources in [`ENCRYPTED`], unchanged for the others.
    pub fn seal(
        &self,
        info: &ResourceInfo,
        key: &str,
        plain: Vec<u8>,
    ) -> Result<Vec<u8>, ApiError> {
        if !Encryption::encrypts(info) {
            return Ok(plain);
        }
        let failed = || ApiError::Internal(format!("unable to encrypt {key}"));
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| failed())?;
        let mut sealed = plain;
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| failed())?;
        let mut out = Vec::with_capacity(PREFIX.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(PREFIX);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plaintext of the value stored at `key`: decrypted when it carries
    /// the encryption prefix (whatever its resource), as it is otherwise.
    /// A value that fails authentication is an InternalError, never garbage.
    pub fn open<'a>(&self, key: &str, stored: &'a [u8]) -> Result<Cow<'a, [u8]>, ApiError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            if stored.starts_with(ANY_PROVIDER) {
                return Err(ApiError::Internal(format!(
                    "unable to decrypt {key}: it was encrypted with a provider or key this server does not have"
                )));
            }
            return Ok(Cow::Borrowed(stored));
        };
        let failed = || {
            ApiError::Internal(format!(
                "unable to decrypt {key}: message authentication failed (the value is corrupt or was encrypted with another key than pki/encryption.key)"
            ))
        };
        if rest.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(failed());
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| failed())?;
        let mut buf = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(key.as_bytes()), &mut buf)
            .map_err(|_| failed())?;
        let len = plain.len();
        buf.truncate(len);
        Ok(Cow::Owned(buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::lookup;

    const KEY: &str = "/registry/core/secrets/default/s";

    fn encryption() -> Encryption {
        Encryption::new(&[7u8; ENCRYPTION_KEY_LEN]).unwrap()
    }

    #[test]
    fn secrets_round_trip_encrypted_and_others_stay_plain() {
        let enc = encryption();
        let secrets = lookup("", "v1", "secrets").unwrap();
        let plain = br#"{"data":{"k":"c2VjcmV0"}}"#.to_vec();
        let sealed = enc.seal(secrets, KEY, plain.clone()).unwrap();
        assert!(sealed.starts_with(PREFIX));
        assert!(!sealed.windows(8).any(|w| w == b"c2VjcmV0"));
        // Random nonces: the same value never encrypts to the same bytes.
        assert_ne!(sealed, enc.seal(secrets, KEY, plain.clone()).unwrap());
        assert_eq!(enc.open(KEY, &sealed).unwrap().as_ref(), plain.as_slice());

        let configmaps = lookup("", "v1", "configmaps").unwrap();
        let cm_key = "/registry/core/configmaps/default/c";
        assert_eq!(enc.seal(configmaps, cm_key, plain.clone()).unwrap(), plain);
        assert!(matches!(
            enc.open(cm_key, &plain).unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn plaintext_from_before_encryption_still_reads() {
        let plain = br#"{"kind":"Secret"}"#;
        assert_eq!(encryption().open(KEY, plain).unwrap().as_ref(), plain);
    }

    #[test]
    fn tampering_another_key_or_another_place_is_an_internal_error() {
        let enc = encryption();
        let secrets = lookup("", "v1", "secrets").unwrap();
        let sealed = enc.seal(secrets, KEY, b"{}".to_vec()).unwrap();
        let is_internal = |r: Result<Cow<'_, [u8]>, ApiError>| matches!(r, Err(ApiError::Internal(m)) if m.starts_with("unable to decrypt"));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(is_internal(enc.open(KEY, &flipped)));
        assert!(is_internal(enc.open(KEY, &sealed[..PREFIX.len() + 3])));
        let other = Encryption::new(&[8u8; ENCRYPTION_KEY_LEN]).unwrap();
        assert!(is_internal(other.open(KEY, &sealed)));
        assert!(is_internal(
            enc.open("/registry/core/secrets/default/other", &sealed)
        ));
        assert!(is_internal(enc.open(KEY, b"k8s:enc:kms:v2:x:abc")));
    }

    #[test]
    fn the_key_is_created_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = crate::pki::ClusterCredentials::load_or_create(dir.path(), &[]).unwrap();
        let again = crate::pki::ClusterCredentials::load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(first.encryption_key(), again.encryption_key());
        assert_ne!(first.encryption_key(), &[0u8; ENCRYPTION_KEY_LEN]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let path = dir.path().join("pki/encryption.key");
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(dir.path().join("pki/encryption.key"), "c2hvcnQ=").unwrap();
        assert!(crate::pki::ClusterCredentials::load_or_create(dir.path(), &[]).is_err());
    }
}
