//! Tests of the cluster key material: persistence, SAN changes, the TLS
//! handshake with and without client certificates, and the kubeconfig.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

fn sans(hosts: &[&str]) -> Vec<String> {
    hosts.iter().map(|s| s.to_string()).collect()
}

#[test]
fn creates_then_reloads_the_same_material() {
    let dir = tempfile::tempdir().unwrap();
    let first = ClusterCredentials::load_or_create(dir.path(), &sans(&["10.1.2.3"])).unwrap();
    let again = ClusterCredentials::load_or_create(dir.path(), &sans(&["10.1.2.3"])).unwrap();
    assert_eq!(first.ca_cert_pem(), again.ca_cert_pem());
    assert_eq!(first.admin_token(), again.admin_token());
    assert_eq!(first.node_bootstrap_token(), again.node_bootstrap_token());
    assert_eq!(first.server_cert_pem, again.server_cert_pem);
    assert_eq!(
        first.service_account_key_pkcs8(),
        again.service_account_key_pkcs8()
    );
    assert_eq!(first.admin_token().len(), 64);
    let (id, secret) = first.node_bootstrap_token().split_once('.').unwrap();
    assert_eq!((id.len(), secret.len()), (6, 16));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for file in ["ca.key", "server.key", "admin.key", "admin.token", "sa.key"] {
            let mode = std::fs::metadata(dir.path().join("pki").join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
}

#[test]
fn changed_sans_reissue_only_the_server_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let first = ClusterCredentials::load_or_create(dir.path(), &sans(&["10.1.2.3"])).unwrap();
    let second =
        ClusterCredentials::load_or_create(dir.path(), &sans(&["10.1.2.4", "skiff.example"]))
            .unwrap();
    assert_ne!(first.server_cert_pem, second.server_cert_pem);
    assert_eq!(first.ca_cert_pem(), second.ca_cert_pem());
    assert!(server_cert_current(
        &second.server_cert_pem,
        &server_sans(&sans(&["skiff.example", "10.1.2.4"]))
    ));
    assert!(!server_cert_current(
        &second.server_cert_pem,
        &server_sans(&sans(&["10.1.2.3"]))
    ));
}

/// Runs one TLS exchange; returns (negotiated ALPN, whether the server saw a client cert).
async fn handshake(
    creds: &ClusterCredentials,
    client_cert: Option<(String, String)>,
) -> (Vec<u8>, bool) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(creds.server_tls_config());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let saw_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .is_some_and(|c| !c.is_empty());
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.unwrap();
        tls.write_all(b"pong").await.unwrap();
        tls.shutdown().await.ok();
        saw_cert
    });

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in parse_certs(creds.ca_cert_pem()).unwrap() {
        roots.add(c).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client_cert {
        Some((cert, key)) => {
            let key = pem_to_der(&key, "PRIVATE KEY").unwrap();
            builder
                .with_client_auth_cert(
                    parse_certs(&cert).unwrap(),
                    PrivateKeyDer::Pkcs8(key.into()),
                )
                .unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");
    let alpn = tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec();
    (alpn, server.await.unwrap())
}

#[tokio::test]
async fn tls_accepts_clients_with_and_without_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let creds = ClusterCredentials::load_or_create(dir.path(), &[]).unwrap();
    let (alpn, saw) = handshake(&creds, None).await;
    assert_eq!(alpn, b"h2");
    assert!(!saw);
    let admin = (
        creds.admin_client_cert_pem().to_string(),
        creds.admin_client_key_pem().to_string(),
    );
    let (_, saw) = handshake(&creds, Some(admin)).await;
    assert!(saw);
}

#[test]
fn issued_client_certificates_carry_user_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let creds = ClusterCredentials::load_or_create(dir.path(), &[]).unwrap();
    let (cert, _key) = creds
        .issue_client_certificate("jane", &sans(&["dev", "ops"]))
        .unwrap();
    let der = pem_to_der(&cert, "CERTIFICATE").unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
    let cn: Vec<_> = parsed
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let orgs: Vec<_> = parsed
        .subject()
        .iter_organization()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(cn, ["jane"]);
    assert_eq!(orgs, ["dev", "ops"]);
}

#[test]
fn admin_kubeconfig_parses_with_kube_rs() {
    let dir = tempfile::tempdir().unwrap();
    let creds = ClusterCredentials::load_or_create(dir.path(), &[]).unwrap();
    let yaml = creds.admin_kubeconfig("https://127.0.0.1:6443");
    let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
    assert_eq!(kc.current_context.as_deref(), Some("skiff"));
    let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
    assert!(user.token.is_some());
    let cluster = kc.clusters[0].cluster.as_ref().unwrap();
    assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
    assert!(cluster.certificate_authority_data.is_some());
    let cert_yaml = creds.admin_cert_kubeconfig("https://127.0.0.1:6443");
    let kc = kube::config::Kubeconfig::from_yaml(&cert_yaml).unwrap();
    assert!(
        kc.auth_infos[0]
            .auth_info
            .as_ref()
            .unwrap()
            .client_certificate_data
            .is_some()
    );
}
