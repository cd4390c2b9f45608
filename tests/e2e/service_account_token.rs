//! ServiceAccount tokens in wasm pods, as a workload sees them: the
//! `kube-api-access-*` volume at /var/run/secrets/kubernetes.io/serviceaccount
//! holds a token that authenticates as the pod's ServiceAccount (and stops
//! working once the pod is gone), the cluster CA from `kube-root-ca.crt`
//! and the namespace; `automountServiceAccountToken: false` opts out.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::Cluster;

const DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Who the API says `token` is (a SelfSubjectReview), or the HTTP code.
async fn whoami(cluster: &Cluster, token: &str) -> Result<String, u16> {
    let api = cluster.api_http();
    let resp = api
        .client
        .post(format!(
            "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
            api.base
        ))
        .bearer_auth(token)
        .json(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))
        .send()
        .await
        .expect("selfsubjectreview");
    let code = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    match body["status"]["userInfo"]["username"].as_str() {
        Some(user) if code == 201 || code == 200 => Ok(user.to_string()),
        _ => Err(code),
    }
}

fn field(cluster: &Cluster, args: &[&str]) -> String {
    String::from_utf8_lossy(&cluster.kubectl_output(args).stdout).into_owned()
}

/// A jsonpath of pod `pod` in namespace `apps`.
fn pod_field(cluster: &Cluster, pod: &str, path: &str) -> String {
    let jsonpath = format!("jsonpath={path}");
    field(cluster, &["get", "pod", pod, "-n", "apps", "-o", &jsonpath])
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_get_a_working_service_account_token() {
    let cluster = Cluster::start();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: reader, namespace: apps}
---
apiVersion: v1
kind: Pod
metadata: {name: reader, namespace: apps}
spec:
  serviceAccountName: reader
  containers:
  - name: main
    image: samples/wasm/toolbox.wasm
    args: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata: {name: private, namespace: apps}
spec:
  automountServiceAccountToken: false
  containers:
  - name: main
    image: samples/wasm/toolbox.wasm
    args: ["sleep", "3600"]
"#,
        ),
    );
    for pod in ["reader", "private"] {
        cluster.wait_for(&format!("{pod} to run"), Duration::from_secs(60), || {
            field(
                &cluster,
                &[
                    "get",
                    "pod",
                    pod,
                    "-n",
                    "apps",
                    "-o",
                    "jsonpath={.status.phase}",
                ],
            ) == "Running"
        });
    }

    // The admission-added volume and mount.
    let volume = field(
        &cluster,
        &[
            "get",
            "pod",
            "reader",
            "-n",
            "apps",
            "-o",
            "jsonpath={.spec.volumes[0].name}",
        ],
    );
    assert!(
        volume.starts_with("kube-api-access-") && volume.len() == 21,
        "{volume}"
    );
    let mount = field(
        &cluster,
        &[
            "get",
            "pod",
            "reader",
            "-n",
            "apps",
            "-o",
            "jsonpath={.spec.containers[0].volumeMounts[0].mountPath} {.spec.containers[0].volumeMounts[0].readOnly}",
        ],
    );
    assert_eq!(mount, format!("{DIR} true"));

    // What the guest reads.
    let cat = |file: &str| {
        cluster.kubectl(&[
            "exec",
            "reader",
            "-n",
            "apps",
            "--",
            "cat",
            &format!("{DIR}/{file}"),
        ])
    };
    assert_eq!(cat("namespace"), "apps");
    let ca = cat("ca.crt");
    let published = field(
        &cluster,
        &[
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "apps",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ],
    );
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    assert_eq!(ca, published);
    let kubeconfig = std::fs::read_to_string(&cluster.kubeconfig).expect("kubeconfig");
    let config: serde_yaml::Value = serde_yaml::from_str(&kubeconfig).expect("yaml");
    let ca_data = config["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .expect("CA data");
    use base64::Engine as _;
    let cluster_ca = base64::engine::general_purpose::STANDARD
        .decode(ca_data)
        .expect("base64");
    assert_eq!(ca.as_bytes(), cluster_ca.as_slice(), "the cluster CA");
    let token = cat("token");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    assert_eq!(
        whoami(&cluster, &token).await,
        Ok("system:serviceaccount:apps:reader".to_string())
    );

    // Opting out: no volume, nothing to read.
    assert_eq!(
        field(
            &cluster,
            &[
                "get",
                "pod",
                "private",
                "-n",
                "apps",
                "-o",
                "jsonpath={.spec.volumes}"
            ]
        ),
        ""
    );
    let missing = cluster.kubectl_output(&[
        "exec",
        "private",
        "-n",
        "apps",
        "--",
        "cat",
        &format!("{DIR}/token"),
    ]);
    assert!(!missing.status.success());

    // The root CA ConfigMap comes back when deleted.
    cluster.kubectl(&["delete", "configmap", "kube-root-ca.crt", "-n", "apps"]);
    cluster.wait_for(
        "kube-root-ca.crt to be re-published",
        Duration::from_secs(30),
        || {
            field(
                &cluster,
                &[
                    "get",
                    "configmap",
                    "kube-root-ca.crt",
                    "-n",
                    "apps",
                    "-o",
                    "jsonpath={.data.ca\\.crt}",
                ],
            ) == published
        },
    );

    // The token is bound to the pod: it stops working when the pod is gone.
    cluster.kubectl(&[
        "delete",
        "pod",
        "reader",
        "-n",
        "apps",
        "--grace-period=0",
        "--wait=true",
    ]);
    assert_eq!(whoami(&cluster, &token).await, Err(401));
}

/// Where the node keeps pod `uid`'s token volume, if it still exists: in
/// memory (`/dev/shm/skiff/<node>/<uid>`), or in the pod's directory where
/// the host has no /dev/shm.
fn token_volume_of(cluster: &Cluster, uid: &str) -> Option<std::path::PathBuf> {
    let in_memory = std::fs::read_dir("/dev/shm/skiff")
        .into_iter()
        .flatten()
        .flatten()
        .map(|node| node.path().join(uid))
        .find(|dir| dir.exists());
    let on_disk = || {
        std::fs::read_dir(cluster.dir().join("node/pods"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|pod| pod.file_name().to_string_lossy().ends_with(uid))
            .map(|pod| pod.path().join("volumes"))
            .find(|dir| dir.exists())
    };
    in_memory.or_else(on_disk)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_pods_token_volume_is_removed_and_its_logs_stay() {
    let mut cluster = Cluster::start();
    cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"
apiVersion: v1
kind: Namespace
metadata: {{name: apps}}
---
apiVersion: v1
kind: Pod
metadata: {{name: once, namespace: apps}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: samples/wasm/toolbox.wasm
    args: ["cat", "{DIR}/namespace"]
---
apiVersion: v1
kind: Pod
metadata: {{name: long, namespace: apps}}
spec:
  containers:
  - name: main
    image: samples/wasm/toolbox.wasm
    args: ["sleep", "3600"]
"#
        )),
    );
    let phase = |pod: &str| pod_field(&cluster, pod, "{.status.phase}");
    let uid = |pod: &str| pod_field(&cluster, pod, "{.metadata.uid}");
    cluster.wait_for("long to run", Duration::from_secs(60), || {
        phase("long") == "Running"
    });
    let long = uid("long");
    let long_volume = token_volume_of(&cluster, &long);
    assert!(long_volume.is_some(), "a running pod's token volume exists");

    cluster.wait_for("once to succeed", Duration::from_secs(60), || {
        phase("once") == "Succeeded"
    });
    let once = uid("once");
    cluster.wait_for("once's volumes to go", Duration::from_secs(30), || {
        token_volume_of(&cluster, &once).is_none()
    });
    // It read its namespace from the volume; its log outlives the volume.
    assert_eq!(
        cluster.kubectl(&["logs", "once", "-n", "apps"]).trim(),
        "apps"
    );
    assert_eq!(phase("once"), "Succeeded");
    assert!(
        token_volume_of(&cluster, &long).is_some(),
        "still running: kept"
    );

    // A stopped node leaves nothing in memory.
    cluster.stop();
    assert_eq!(token_volume_of(&cluster, &long), None);
    if let Some(dir) = long_volume.filter(|d| d.starts_with("/dev/shm")) {
        let node_root = dir.parent().expect("node root").to_path_buf();
        assert!(!node_root.exists(), "{} left behind", node_root.display());
    }
}
