//! The cluster's key material: a CA generated at first start, the API
//! server's certificate (SANs for every listen host), the bootstrap admin
//! credentials (token and client certificate), the node bootstrap token, the
//! ServiceAccount token signing key and the key that encrypts Secrets at
//! rest (`encryption.key`, used by `api::encryption`). Everything lives in
//! `<data_dir>/pki/` (mode 0600) and is loaded again on restart.
//!
//! Token checking and RBAC live in `api::auth`; this module only makes and
//! keeps the secrets.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use rand::Rng as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Errors while creating, loading or using the cluster's key material.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("pki file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pki file {path} is malformed: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Tls(String),
}

/// Names every API server certificate carries besides the configured hosts.
const DEFAULT_SANS: &[&str] = &[
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// The name the admin credential carries (client certificate CN and token user).
pub const ADMIN_USER: &str = "admin";
/// The group that RBAC always allows.
pub const MASTERS_GROUP: &str = "system:masters";

/// The cluster CA, the server certificate and the bootstrap credentials.
#[derive(Clone)]
pub struct ClusterCredentials {
    dir: PathBuf,
    ca_cert_pem: String,
    ca_key_pem: String,
    server_cert_pem: String,
    admin_cert_pem: String,
    admin_key_pem: String,
    admin_token: String,
    node_bootstrap_token: String,
    member_token: String,
    service_account_key_pkcs8: Arc<Vec<u8>>,
    encryption_key: Arc<[u8; ENCRYPTION_KEY_LEN]>,
    tls: Arc<rustls::ServerConfig>,
}

/// Length of the at-rest encryption key (AES-256).
pub const ENCRYPTION_KEY_LEN: usize = 32;

impl std::fmt::Debug for ClusterCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCredentials")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ClusterCredentials {
    /// Loads the credentials from `<data_dir>/pki/`, creating whatever is
    /// missing; the server certificate is reissued when `san_hosts` (IPs or
    /// DNS names; 127.0.0.1 and localhost are always included) changed or it
    /// nears expiry.
    pub fn load_or_create(
        data_dir: &Path,
        san_hosts: &[String],
    ) -> Result<ClusterCredentials, PkiError> {
        let dir = data_dir.join("pki");
        std::fs::create_dir_all(&dir).map_err(|source| PkiError::Io {
            path: dir.clone(),
            source,
        })?;
        restrict_dir(&dir)?;

        let (ca_cert_pem, ca_key_pem) = match (
            read_opt(&dir.join("ca.crt"))?,
            read_opt(&dir.join("ca.key"))?,
        ) {
            (Some(cert), Some(key)) => (cert, key),
            _ => {
                let (cert, key) = generate_ca()?;
                write_secret(&dir.join("ca.key"), key.as_bytes())?;
                write_secret(&dir.join("ca.crt"), cert.as_bytes())?;
                // A new CA invalidates every certificate it did not sign.
                for stale in ["server.crt", "server.key", "admin.crt", "admin.key"] {
                    let _ = std::fs::remove_file(dir.join(stale));
                }
                tracing::info!(dir = %dir.display(), "generated a new cluster CA");
                (cert, key)
            }
        };
        let ca_key =
            KeyPair::from_pem(&ca_key_pem).map_err(|e| malformed(&dir.join("ca.key"), e))?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key)
            .map_err(|e| malformed(&dir.join("ca.crt"), e))?;

        let wanted_sans = server_sans(san_hosts);
        let server = match (
            read_opt(&dir.join("server.crt"))?,
            read_opt(&dir.join("server.key"))?,
        ) {
            (Some(cert), Some(key)) if server_cert_current(&cert, &wanted_sans) => (cert, key),
            _ => {
                let (cert, key) = issue_server_cert(&issuer, &wanted_sans)?;
                write_secret(&dir.join("server.key"), key.as_bytes())?;
                write_secret(&dir.join("server.crt"), cert.as_bytes())?;
                tracing::info!(sans = ?wanted_sans, "issued the API server certificate");
                (cert, key)
            }
        };

        let admin = match (
            read_opt(&dir.join("admin.crt"))?,
            read_opt(&dir.join("admin.key"))?,
        ) {
            (Some(cert), Some(key)) if !cert_expiring(&cert) => (cert, key),
            _ => {
                let (cert, key) =
                    issue_client_cert_with(&issuer, ADMIN_USER, &[MASTERS_GROUP.to_string()])?;
                write_secret(&dir.join("admin.key"), key.as_bytes())?;
                write_secret(&dir.join("admin.crt"), cert.as_bytes())?;
                (cert, key)
            }
        };

        let admin_token = load_or_create_text(&dir.join("admin.token"), random_token)?;
        let node_bootstrap_token =
            load_or_create_text(&dir.join("node-bootstrap.token"), bootstrap_token)?;
        let member_token = load_or_create_text(&dir.join("member.token"), random_token)?;
        let sa_pem = load_or_create_text(&dir.join("sa.key"), || {
            KeyPair::generate()
                .map(|k| k.serialize_pem())
                .unwrap_or_default()
        })?;
        let sa_key = KeyPair::from_pem(&sa_pem).map_err(|e| malformed(&dir.join("sa.key"), e))?;
        let encryption_key = load_or_create_encryption_key(&dir.join("encryption.key"))?;

        let tls = build_tls_config(&ca_cert_pem, &server.0, &server.1)?;
        Ok(ClusterCredentials {
            tls,
            dir,
            ca_cert_pem,
            ca_key_pem,
            server_cert_pem: server.0,
            admin_cert_pem: admin.0,
            admin_key_pem: admin.1,
            admin_token,
            node_bootstrap_token,
            member_token,
            service_account_key_pkcs8: Arc::new(sa_key.serialize_der()),
            encryption_key: Arc::new(encryption_key),
        })
    }

    /// The secret control-plane members present to each other (Raft RPCs,
    /// the join bundle); part of the join token.
    pub fn member_token(&self) -> &str {
        &self.member_token
    }

    /// The directory holding the key material (`<data_dir>/pki`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// rustls config for the API port: ALPN h2 and http/1.1; client
    /// certificates are requested but optional, and verified against the CA
    /// (so a certificate reaching `Authenticator::authenticate` is trusted).
    pub fn server_tls_config(&self) -> Arc<rustls::ServerConfig> {
        self.tls.clone()
    }

    /// The API server's certificate (PEM).
    pub fn server_cert_pem(&self) -> &str {
        &self.server_cert_pem
    }

    /// The cluster CA certificate (PEM); clients trust this.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// The bootstrap admin bearer token (user "admin", group system:masters).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The admin client certificate (PEM; CN=admin, O=system:masters).
    pub fn admin_client_cert_pem(&self) -> &str {
        &self.admin_cert_pem
    }

    /// The admin client certificate's private key (PKCS#8 PEM).
    pub fn admin_client_key_pem(&self) -> &str {
        &self.admin_key_pem
    }

    /// The token nodes present to join (`skiff node --token`); it
    /// authenticates as `system:bootstrap:<id>` in group system:nodes.
    pub fn node_bootstrap_token(&self) -> &str {
        &self.node_bootstrap_token
    }

    /// The ServiceAccount token signing key (ECDSA P-256, PKCS#8 DER).
    pub fn service_account_key_pkcs8(&self) -> &[u8] {
        &self.service_account_key_pkcs8
    }

    /// The AES-256-GCM key Secrets are encrypted with at rest (`pki/encryption.key`).
    pub fn encryption_key(&self) -> &[u8; ENCRYPTION_KEY_LEN] {
        &self.encryption_key
    }

    /// Issues a client certificate signed by the cluster CA: CN = `user`,
    /// O = each of `groups` (at most two). Returns (certificate PEM, PKCS#8 key PEM).
    pub fn issue_client_certificate(
        &self,
        user: &str,
        groups: &[String],
    ) -> Result<(String, String), PkiError> {
        let ca_key = KeyPair::from_pem(&self.ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, ca_key)?;
        issue_client_cert_with(&issuer, user, groups)
    }

    /// A kubeconfig (YAML) for the admin: the CA as certificate-authority-data
    /// and the admin bearer token; accepted by kubectl, kube-rs and the Python client.
    pub fn admin_kubeconfig(&self, server_url: &str) -> String {
        self.kubeconfig(
            server_url,
            ADMIN_USER,
            &[("token", self.admin_token.clone())],
        )
    }

    /// Like [`Self::admin_kubeconfig`] but authenticating with the admin
    /// client certificate instead of the token.
    pub fn admin_cert_kubeconfig(&self, server_url: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        self.kubeconfig(
            server_url,
            "admin-cert",
            &[
                ("client-certificate-data", b64.encode(&self.admin_cert_pem)),
                ("client-key-data", b64.encode(&self.admin_key_pem)),
            ],
        )
    }

    fn kubeconfig(&self, server_url: &str, user: &str, fields: &[(&str, String)]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut user_fields = serde_json::Map::new();
        for (k, v) in fields {
            user_fields.insert((*k).to_string(), serde_json::Value::String(v.clone()));
        }
        let doc = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": "skiff",
                "cluster": { "server": server_url, "certificate-authority-data": b64.encode(&self.ca_cert_pem) },
            }],
            "users": [{ "name": user, "user": user_fields }],
            "contexts": [{ "name": "skiff", "context": { "cluster": "skiff", "user": user, "namespace": "default" } }],
            "current-context": "skiff",
            "preferences": {},
        });
        serde_yaml::to_string(&doc).unwrap_or_default()
    }
}

fn malformed(path: &Path, err: impl std::fmt::Display) -> PkiError {
    PkiError::Malformed {
        path: path.to_path_buf(),
        reason: err.to_string(),
    }
}

/// The SANs a server certificate should carry, sorted and deduplicated.
fn server_sans(san_hosts: &[String]) -> Vec<String> {
    let mut set: BTreeSet<String> = DEFAULT_SANS.iter().map(|s| s.to_string()).collect();
    for host in san_hosts {
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        if !host.is_empty() && host != "0.0.0.0" && host != "::" {
            set.insert(host.to_string());
        }
    }
    set.into_iter().collect()
}

fn build_tls_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in parse_certs(ca_pem)? {
        roots.add(ca).map_err(|e| PkiError::Tls(e.to_string()))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|e| PkiError::Tls(e.to_string()))?;
    let mut chain = parse_certs(cert_pem)?;
    chain.extend(parse_certs(ca_pem)?);
    let key = pem_to_der(key_pem, "PRIVATE KEY")
        .ok_or_else(|| PkiError::Tls("server key is not a PKCS#8 PEM".into()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)))
        .map_err(|e| PkiError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::thread_rng().r#gen();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// A validity window from yesterday to `years` from now.
fn validity(params: &mut CertificateParams, years: i32) {
    use chrono::Datelike as _;
    let start = chrono::Utc::now() - chrono::Duration::days(1);
    params.not_before = rcgen::date_time_ymd(start.year(), start.month() as u8, start.day() as u8);
    let end = chrono::Utc::now();
    params.not_after = rcgen::date_time_ymd(
        end.year() + years,
        end.month() as u8,
        end.day().min(28) as u8,
    );
}

fn generate_ca() -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "skiff-ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial());
    validity(&mut params, 10);
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn issue_server_cert(
    issuer: &Issuer<'_, KeyPair>,
    sans: &[String],
) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "skiff-apiserver");
    params.distinguished_name = dn;
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(s.clone().try_into()?)),
        })
        .collect::<Result<Vec<_>, rcgen::Error>>()?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    validity(&mut params, 2);
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn issue_client_cert_with(
    issuer: &Issuer<'_, KeyPair>,
    user: &str,
    groups: &[String],
) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    // rcgen keeps one value per attribute type, so a second O goes in under
    // its raw OID (2.5.4.10); more than two groups cannot be expressed.
    if groups.len() > 2 {
        return Err(PkiError::Tls(format!(
            "a client certificate carries at most 2 groups, got {}",
            groups.len()
        )));
    }
    let mut dn = DistinguishedName::new();
    for (i, group) in groups.iter().enumerate() {
        let ty = if i == 0 {
            DnType::OrganizationName
        } else {
            DnType::CustomDnType(vec![2, 5, 4, 10])
        };
        dn.push(ty, group.as_str());
    }
    dn.push(DnType::CommonName, user);
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    validity(&mut params, 2);
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Whether a stored server certificate carries exactly `sans` and is not near expiry.
fn server_cert_current(cert_pem: &str, sans: &[String]) -> bool {
    let Some(der) = pem_to_der(cert_pem, "CERTIFICATE") else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return false;
    };
    if expiring(&cert) {
        return false;
    }
    let mut have = BTreeSet::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    have.insert(d.to_string());
                }
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).map(IpAddr::from).ok(),
                        16 => <[u8; 16]>::try_from(*bytes).map(IpAddr::from).ok(),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        have.insert(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let want: BTreeSet<String> = sans
        .iter()
        .map(|s| {
            s.parse::<IpAddr>()
                .map(|ip| ip.to_string())
                .unwrap_or_else(|_| s.clone())
        })
        .collect();
    have == want
}

fn cert_expiring(cert_pem: &str) -> bool {
    let Some(der) = pem_to_der(cert_pem, "CERTIFICATE") else {
        return true;
    };
    match x509_parser::parse_x509_certificate(&der) {
        Ok((_, cert)) => expiring(&cert),
        Err(_) => true,
    }
}

/// True when the certificate expires within 30 days.
fn expiring(cert: &x509_parser::certificate::X509Certificate<'_>) -> bool {
    let not_after = cert.validity().not_after.timestamp();
    not_after - chrono::Utc::now().timestamp() < 30 * 24 * 3600
}

fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| PkiError::Tls(e.to_string()))?;
    if certs.is_empty() {
        return Err(PkiError::Tls("no certificate in PEM".into()));
    }
    Ok(certs)
}

/// The DER body of the first PEM block labelled `label`.
pub(crate) fn pem_to_der(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// 32 random bytes, hex: the admin token.
fn random_token() -> String {
    let bytes: [u8; 32] = rand::thread_rng().r#gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A Kubernetes-style bootstrap token: `[a-z0-9]{6}.[a-z0-9]{16}`.
fn bootstrap_token() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
            .collect()
    };
    let id = pick(6);
    let secret = pick(16);
    format!("{id}.{secret}")
}

fn read_opt(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn load_or_create_text(path: &Path, make: impl FnOnce() -> String) -> Result<String, PkiError> {
    if let Some(text) = read_opt(path)? {
        let text = text.trim().to_string();
        if !text.is_empty() {
            return Ok(text);
        }
    }
    let text = make();
    if text.is_empty() {
        return Err(PkiError::Malformed {
            path: path.to_path_buf(),
            reason: "could not generate".into(),
        });
    }
    write_secret(path, text.as_bytes())?;
    Ok(text)
}

/// The at-rest encryption key, base64 in its file (as in an
/// EncryptionConfiguration); a file that holds anything but 32 bytes is an
/// error, never silently replaced, since the data it encrypted needs it.
fn load_or_create_encryption_key(path: &Path) -> Result<[u8; ENCRYPTION_KEY_LEN], PkiError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let text = load_or_create_text(path, || {
        let key: [u8; ENCRYPTION_KEY_LEN] = rand::thread_rng().r#gen();
        b64.encode(key)
    })?;
    let bytes = b64
        .decode(text.as_bytes())
        .map_err(|e| malformed(path, e))?;
    bytes.try_into().map_err(|bytes: Vec<u8>| {
        malformed(
            path,
            format!("{} bytes, want {ENCRYPTION_KEY_LEN}", bytes.len()),
        )
    })
}

/// Writes a file readable only by its owner, atomically (temp file + rename).
pub(crate) fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    use std::io::Write as _;
    let io = |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn restrict_dir(dir: &Path) -> Result<(), PkiError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| PkiError::Io {
                path: dir.to_path_buf(),
                source,
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "pki_tests.rs"]
mod tests;
