//! Pulling a wasm artifact from a real OCI registry on loopback (Debian's
//! `docker-registry`): push with oci-client, pull by tag and by digest,
//! IfNotPresent/Never served from the local store, a tampered digest refused.
//! Skipped (with a note) when `docker-registry` is not installed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use skiff_runtime_wasm::{ArtifactKind, ExitReason, PullOptions, PullPolicy, WasmError};

use crate::support::*;

struct Registry {
    child: Child,
    addr: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `docker-registry` on a free loopback port, or None if absent.
async fn start_registry(dir: &std::path::Path) -> Option<Registry> {
    let bin = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.join("data").display()
        ),
    )
    .expect("write config");
    let child = Command::new(bin)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn registry");
    let registry = Registry { child, addr };
    let deadline = Instant::now() + Duration::from_secs(15);
    while tokio::net::TcpStream::connect(&registry.addr)
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "registry did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some(registry)
}

#[tokio::test]
async fn pulls_a_wasm_artifact_from_a_loopback_registry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(registry) = start_registry(dir.path()).await else {
        eprintln!("docker-registry not installed; skipping the OCI pull test");
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let image = format!("{}/skiff/hello:v1", registry.addr);
    let reference: Reference = image.parse().expect("reference");
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let wasm = std::fs::read(sample("hello.wasm")).expect("sample");
    let layer = ImageLayer::new(wasm.clone(), "application/wasm".into(), None);
    let config = Config::new(
        b"{}".to_vec(),
        "application/vnd.wasm.config.v0+json".into(),
        None,
    );
    client
        .push(&reference, &[layer], config, &RegistryAuth::Anonymous, None)
        .await
        .expect("push");

    let rt = runtime(&dir.path().join("cache"));
    let artifact = rt.pull(&image, &pull_options()).await.expect("pull by tag");
    assert_eq!(artifact.kind(), ArtifactKind::P1Module);
    let (out, err) = (Capture::default(), Capture::default());
    let status = rt
        .run(&artifact, spec("hello", &["hello"], &out, &err))
        .await
        .expect("run")
        .wait()
        .await;
    assert_eq!(status.reason, ExitReason::Completed);
    assert!(out.text().starts_with("Hello from skiff"));

    // By digest: the manifest's own digest works, any other is refused.
    let manifest_digest = client
        .fetch_manifest_digest(&reference, &RegistryAuth::Anonymous)
        .await
        .expect("manifest digest");
    let repo = format!("{}/skiff/hello", registry.addr);
    let always = PullOptions {
        policy: PullPolicy::Always,
        ..Default::default()
    };
    let by_digest = rt
        .pull(&format!("{repo}@{manifest_digest}"), &always)
        .await
        .expect("pull by digest");
    assert_eq!(by_digest.digest(), artifact.digest());
    let wrong = format!("{repo}@sha256:{}", "0".repeat(64));
    assert!(rt.pull(&wrong, &always).await.is_err());

    // A container image (no wasm layer) is NotWasm, for the OCI runtime.
    let container: Reference = format!("{repo}-container:v1").parse().expect("reference");
    let tar = ImageLayer::new(
        vec![0u8; 64],
        "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        None,
    );
    let config = Config::new(
        b"{}".to_vec(),
        "application/vnd.oci.image.config.v1+json".into(),
        None,
    );
    client
        .push(&container, &[tar], config, &RegistryAuth::Anonymous, None)
        .await
        .expect("push container image");
    assert!(matches!(
        rt.pull(&container.whole(), &pull_options()).await,
        Err(WasmError::NotWasm { .. })
    ));

    // Never / IfNotPresent are served locally once pulled, even with the
    // registry gone; Always then fails.
    drop(registry);
    for policy in [PullPolicy::Never, PullPolicy::IfNotPresent] {
        let opts = PullOptions {
            policy,
            ..Default::default()
        };
        let again = rt.pull(&image, &opts).await.expect("local copy");
        assert_eq!(again.digest(), artifact.digest());
    }
    assert!(matches!(
        rt.pull(&image, &always).await,
        Err(WasmError::Pull { .. })
    ));
}
