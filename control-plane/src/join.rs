//! Joining more control-plane members, as k3s does with its server token.
//!
//! The join token is `skiff1:<sha256 of the CA certificate, hex>:<member
//! secret>`. A new member first fetches the CA from `/internal/cluster/ca`
//! without trusting anyone, keeps it only if its hash matches the token, and
//! then, over TLS verified against that CA, presents the secret to fetch the
//! cluster's key material (`/internal/cluster/bundle`: CA, ServiceAccount
//! signing key, admin and node credentials, the member secret itself). The
//! member secret also authenticates every Raft RPC (`/internal/raft/*`).
//!
//! The HTTP handlers live in `api::server`; this file holds the token
//! format, the bundle and the client side.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::pki::{ClusterCredentials, PkiError, write_secret};

/// Files of `<data_dir>/pki` that are per member and never copied.
const PER_MEMBER_FILES: &[&str] = &["server.crt", "server.key"];

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("invalid join token: expected skiff1:<ca-hash>:<secret>")]
    InvalidToken,
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the CA served by {url} does not match the join token's hash")]
    CaMismatch { url: String },
    #[error("{url} refused the join token ({status})")]
    Refused { url: String, status: u16 },
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// A parsed join token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_hash: String,
    pub secret: String,
}

impl JoinToken {
    /// The token for this cluster's credentials.
    pub fn for_cluster(credentials: &ClusterCredentials) -> JoinToken {
        JoinToken {
            ca_hash: ca_hash(credentials.ca_cert_pem()),
            secret: credentials.member_token().to_string(),
        }
    }

    /// Parses `skiff1:<hash>:<secret>`.
    pub fn parse(token: &str) -> Result<JoinToken, JoinError> {
        let mut parts = token.trim().splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("skiff1"), Some(hash), Some(secret))
                if hash.len() == 64
                    && hash.bytes().all(|b| b.is_ascii_hexdigit())
                    && !secret.is_empty() =>
            {
                Ok(JoinToken {
                    ca_hash: hash.to_ascii_lowercase(),
                    secret: secret.to_string(),
                })
            }
            _ => Err(JoinError::InvalidToken),
        }
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "skiff1:{}:{}", self.ca_hash, self.secret)
    }
}

/// The hex SHA-256 of a CA certificate's PEM text.
pub fn ca_hash(ca_pem: &str) -> String {
    let digest = sha2::Sha256::digest(ca_pem.trim().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// True when `presented` (an `Authorization` header value) carries `secret`.
/// Compares in constant time so the secret cannot be guessed byte by byte.
pub fn bearer_matches(presented: Option<&str>, secret: &str) -> bool {
    let Some(token) = presented.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (token.trim().as_bytes(), secret.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The cluster-wide key material a new member needs (file name → contents).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Bundle {
    pub files: BTreeMap<String, String>,
}

impl Bundle {
    /// Reads the shared files of `<data_dir>/pki`.
    pub fn read(credentials: &ClusterCredentials) -> Result<Bundle, PkiError> {
        let dir = credentials.dir();
        let io = |source| PkiError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if PER_MEMBER_FILES.contains(&name.as_str()) || name.ends_with(".tmp") {
                continue;
            }
            if entry.file_type().map_err(io)?.is_file() {
                let text =
                    std::fs::read_to_string(entry.path()).map_err(|source| PkiError::Io {
                        path: entry.path(),
                        source,
                    })?;
                files.insert(name, text);
            }
        }
        Ok(Bundle { files })
    }

    /// Writes the bundle into `<data_dir>/pki` (mode 0600).
    pub fn install(&self, data_dir: &Path) -> Result<(), PkiError> {
        let dir = data_dir.join("pki");
        std::fs::create_dir_all(&dir).map_err(|source| PkiError::Io {
            path: dir.clone(),
            source,
        })?;
        for (name, text) in &self.files {
            let safe = !name.is_empty()
                && !name.contains(['/', '\\'])
                && name != "."
                && name != ".."
                && !PER_MEMBER_FILES.contains(&name.as_str());
            if safe {
                write_secret(&dir.join(name), text.as_bytes())?;
            }
        }
        Ok(())
    }
}

/// Fetches the CA from `server` (any certificate accepted), checks it against
/// the token, then fetches the bundle over TLS verified by that CA.
pub async fn fetch_bundle(server: &str, token: &JoinToken) -> Result<Bundle, JoinError> {
    let base = server.trim_end_matches('/');
    let ca_url = format!("{base}/internal/cluster/ca");
    let unreachable = |url: &str, e: reqwest::Error| JoinError::Unreachable {
        url: url.to_string(),
        reason: e.to_string(),
    };
    let insecure = client(None).map_err(|reason| JoinError::Unreachable {
        url: ca_url.clone(),
        reason,
    })?;
    let ca_pem = insecure
        .get(&ca_url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| unreachable(&ca_url, e))?
        .text()
        .await
        .map_err(|e| unreachable(&ca_url, e))?;
    if ca_hash(&ca_pem) != token.ca_hash {
        return Err(JoinError::CaMismatch { url: ca_url });
    }
    let bundle_url = format!("{base}/internal/cluster/bundle");
    let verified = client(Some(&ca_pem)).map_err(|reason| JoinError::Unreachable {
        url: bundle_url.clone(),
        reason,
    })?;
    let response = verified
        .get(&bundle_url)
        .bearer_auth(&token.secret)
        .send()
        .await
        .map_err(|e| unreachable(&bundle_url, e))?;
    if !response.status().is_success() {
        return Err(JoinError::Refused {
            url: bundle_url,
            status: response.status().as_u16(),
        });
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| unreachable(&bundle_url, e))?;
    serde_json::from_slice(&bytes).map_err(|e| JoinError::Unreachable {
        url: bundle_url,
        reason: format!("invalid bundle: {e}"),
    })
}

/// An HTTPS client trusting `ca_pem`, or (None) any server certificate.
fn client(ca_pem: Option<&str>) -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let tls = match ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut pem.as_bytes()).flatten() {
                let _ = roots.add(cert);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth(),
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .map_err(|e| e.to_string())
}

/// Accepts any server certificate: only for fetching the CA, whose hash the
/// join token then checks; no secret is sent over such a connection.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let token = JoinToken {
            ca_hash: "ab".repeat(32),
            secret: "s3cr3t".into(),
        };
        assert_eq!(JoinToken::parse(&token.to_string()).unwrap(), token);
        assert!(JoinToken::parse("skiff1:abc:secret").is_err());
        assert!(JoinToken::parse("k10:".to_string().as_str()).is_err());
        assert!(JoinToken::parse(&format!("skiff1:{}:", "ab".repeat(32))).is_err());
    }

    #[test]
    fn bearer_comparison_needs_the_exact_secret() {
        assert!(bearer_matches(Some("Bearer abc"), "abc"));
        assert!(!bearer_matches(Some("Bearer abd"), "abc"));
        assert!(!bearer_matches(Some("Bearer ab"), "abc"));
        assert!(!bearer_matches(Some("abc"), "abc"));
        assert!(!bearer_matches(None, "abc"));
    }

    #[test]
    fn bundle_install_skips_unsafe_and_per_member_names() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle {
            files: BTreeMap::from([
                ("ca.crt".to_string(), "CA".to_string()),
                ("../escape".to_string(), "x".to_string()),
                ("server.key".to_string(), "k".to_string()),
            ]),
        };
        bundle.install(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("pki/ca.crt")).unwrap(),
            "CA"
        );
        assert!(!dir.path().join("escape").exists());
        assert!(!dir.path().join("pki/server.key").exists());
    }
}
