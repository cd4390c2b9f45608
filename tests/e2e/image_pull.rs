//! Wasm images from an OCI registry through the API: Debian's
//! `docker-registry` on loopback, behind htpasswd, holds hello.wasm as a
//! wasm artifact (pushed here with the distribution API). A pod without
//! credentials is refused; with a `docker-registry` Secret, named by the pod
//! or inherited from its ServiceAccount, pods naming the image by tag and by
//! digest run it, and a tag the registry lacks shows ImagePullBackOff as
//! kubectl users know it. An OCI
//! reference says nothing of what it holds, so the pods name the wasm
//! runtime (`runtimeClassName: wasmtime`, as runwasi's shims are named).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::harness::{Cluster, repo_root};

struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a registry that wants `user`/`password` (htpasswd, bcrypt).
fn start_registry(user: &str, password: &str) -> Registry {
    let bin = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("docker-registry is not installed: run scripts/setup.sh");
    let dir = tempfile::tempdir().expect("registry dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("registry.yml");
    let storage = dir.path().join("data");
    let htpasswd = dir.path().join("htpasswd");
    // bcrypt, the only scheme docker-registry's htpasswd reads, from libcrypt.
    let hashed = Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
            password,
        ])
        .output()
        .expect("python3 for bcrypt");
    assert!(hashed.status.success(), "bcrypt: {hashed:?}");
    let hashed = String::from_utf8_lossy(&hashed.stdout).trim().to_string();
    std::fs::write(&htpasswd, format!("{user}:{hashed}\n")).expect("htpasswd");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\nauth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
            storage.display(),
            htpasswd.display()
        ),
    )
    .expect("registry config");
    let child = Command::new(bin)
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn docker-registry");
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "docker-registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry {
        child,
        addr,
        _dir: dir,
    }
}

fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    format!(
        "sha256:{}",
        hash.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Pushes `wasm` as `repo:tag` (an OCI manifest with one `application/wasm`
/// layer); returns the manifest's digest.
async fn push(registry: &str, login: (&str, &str), repo: &str, tag: &str, wasm: &[u8]) -> String {
    let http = reqwest::Client::new();
    let base = format!("http://{registry}");
    let upload = |bytes: Vec<u8>| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let started = http
                .post(format!("{base}/v2/{repo}/blobs/uploads/"))
                .basic_auth(login.0, Some(login.1))
                .send()
                .await
                .expect("start upload");
            assert_eq!(started.status(), 202, "start upload");
            let location = started
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .expect("upload location")
                .to_string();
            let url = if location.starts_with("http") {
                location
            } else {
                format!("{base}{location}")
            };
            let sep = if url.contains('?') { '&' } else { '?' };
            let d = digest(&bytes);
            let done = http
                .put(format!("{url}{sep}digest={d}"))
                .basic_auth(login.0, Some(login.1))
                .header("content-type", "application/octet-stream")
                .body(bytes)
                .send()
                .await
                .expect("finish upload");
            assert_eq!(done.status(), 201, "finish upload");
            d
        }
    };
    let config = b"{}".to_vec();
    let config_digest = upload(config.clone()).await;
    let layer_digest = upload(wasm.to_vec()).await;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.wasm.config.v0+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/wasm",
            "digest": layer_digest,
            "size": wasm.len(),
        }],
    });
    let body = serde_json::to_vec(&manifest).expect("manifest json");
    let put = http
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .basic_auth(login.0, Some(login.1))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body.clone())
        .send()
        .await
        .expect("put manifest");
    assert_eq!(put.status(), 201, "put manifest");
    digest(&body)
}

fn pod(name: &str, image: &str, pull_secret: Option<&str>) -> String {
    let secrets = pull_secret
        .map(|s| format!("  imagePullSecrets: [{{name: {s}}}]\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{secrets}  runtimeClassName: wasmtime\n  restartPolicy: Never\n  containers:\n  - name: hello\n    image: {image}\n    imagePullPolicy: Always\n"
    )
}

fn wait_reason(cluster: &Cluster, pod: &str, reason: &str) {
    cluster.wait_for(
        &format!("{pod} to show {reason}"),
        Duration::from_secs(60),
        || {
            field(
                cluster,
                pod,
                "{.status.containerStatuses[0].state.waiting.reason}",
            ) == reason
        },
    );
}

fn field(cluster: &Cluster, pod: &str, jsonpath: &str) -> String {
    cluster.jsonpath(&["pod", pod], jsonpath)
}

#[test]
fn pods_run_wasm_images_pulled_from_a_loopback_registry() {
    let registry = start_registry("amy", "pw1");
    let wasm = std::fs::read(repo_root().join("samples/wasm/hello.wasm")).expect("hello.wasm");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let manifest_digest = runtime.block_on(push(
        &registry.addr,
        ("amy", "pw1"),
        "wasm/hello",
        "v1",
        &wasm,
    ));
    let cluster = Cluster::start();
    let by_tag = format!("{}/wasm/hello:v1", registry.addr);
    let by_digest = format!("{}/wasm/hello@{manifest_digest}", registry.addr);
    let missing = format!("{}/wasm/hello:missing", registry.addr);
    let apply = |name: &str, image: &str, secret: Option<&str>| {
        cluster.apply(&pod(name, image, secret));
    };

    // Without credentials the registry says no.
    apply("anonymous", &by_tag, None);
    wait_reason(&cluster, "anonymous", "ImagePullBackOff");
    let message = field(
        &cluster,
        "anonymous",
        "{.status.containerStatuses[0].state.waiting.message}",
    );
    assert!(message.contains("Not authorized"), "{message}");

    // A docker-registry Secret, named by the pod or inherited from its ServiceAccount.
    cluster.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={}", registry.addr),
        "--docker-username=amy",
        "--docker-password=pw1",
    ]);
    apply("by-tag", &by_tag, Some("regcred"));
    cluster.kubectl(&[
        "patch",
        "serviceaccount",
        "default",
        "-p",
        r#"{"imagePullSecrets":[{"name":"regcred"}]}"#,
    ]);
    apply("by-digest", &by_digest, None);
    apply("missing", &missing, None);
    assert_eq!(
        field(&cluster, "by-digest", "{.spec.imagePullSecrets[0].name}"),
        "regcred"
    );
    for name in ["by-tag", "by-digest"] {
        cluster.wait_for(
            &format!("{name} to succeed"),
            Duration::from_secs(60),
            || field(&cluster, name, "{.status.phase}") == "Succeeded",
        );
        let logs = cluster.kubectl(&["logs", name]);
        assert!(logs.contains("Hello from skiff"), "{name}: {logs}");
        let image_id = field(&cluster, name, "{.status.containerStatuses[0].imageID}");
        assert!(image_id.contains("sha256:"), "{name}: imageID {image_id:?}");
    }
    let events = cluster.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=by-tag",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(
        events.contains("Pulling") && events.contains("Pulled"),
        "{events}"
    );

    // A tag the registry lacks: the pull fails (ErrImagePull), then backs
    // off (ImagePullBackOff), retried with a growing delay.
    wait_reason(&cluster, "missing", "ErrImagePull");
    let asked = Instant::now();
    wait_reason(&cluster, "missing", "ImagePullBackOff");
    // The second try waits out the 10 s back-off, whatever else changes in
    // the namespace meanwhile.
    assert!(
        asked.elapsed() > Duration::from_secs(5),
        "retried after {:?}",
        asked.elapsed()
    );
    let failed = cluster.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=missing,reason=Failed",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(failed.contains("manifest unknown"), "{failed}");
    let table = cluster.kubectl(&["get", "pod", "missing"]);
    assert!(table.contains("ImagePullBackOff"), "{table}");
}
