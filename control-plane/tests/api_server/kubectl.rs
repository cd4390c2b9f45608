//! kubectl 1.32 (/usr/bin/kubectl) against the API server: apply,
//! re-apply (strategic merge), get (tables), describe, label, patch,
//! scale, delete, get -w. Each run gets its own HOME.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::{Cluster, eventually};

pub struct Kubectl {
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Kubectl {
    pub fn new(kubeconfig: &Path) -> Option<Kubectl> {
        if !Path::new("/usr/bin/kubectl").exists() {
            eprintln!("kubectl not installed; skipping");
            return None;
        }
        Some(Kubectl {
            kubeconfig: kubeconfig.to_path_buf(),
            home: tempfile::tempdir().expect("home"),
        })
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("/usr/bin/kubectl");
        cmd.args(args)
            .env("HOME", self.home.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::piped());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("kubectl runs")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}"
        );
        stdout
    }

    pub fn apply_stdin(&self, yaml: &str) -> String {
        use std::io::Write;
        let mut child = self
            .command(&["apply", "-f", "-"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(yaml.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("wait");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "kubectl apply failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  mode: fast
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: shop
stringData:
  password: hunter2
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: samples/wasm/http-echo.wasm
        ports:
        - containerPort: 8080
        env:
        - {name: A, value: "1"}
      - name: sidecar
        image: samples/wasm/worker.wasm
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
"#;

fn header(table: &str) -> Vec<String> {
    table
        .lines()
        .next()
        .unwrap_or("")
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_get_describe_patch_scale_delete() {
    let mut c = Cluster::start().await;
    let Some(k) = Kubectl::new(&c.kubeconfig_path()) else {
        return;
    };
    let out = tokio::task::block_in_place(|| k.apply_stdin(MANIFEST));
    assert!(
        out.contains("namespace/shop created") && out.contains("deployment.apps/web created"),
        "{out}"
    );

    let changed = MANIFEST
        .replace("value: \"1\"", "value: \"2\"")
        .replace("replicas: 2", "replicas: 3");
    let out = tokio::task::block_in_place(|| k.apply_stdin(&changed));
    assert!(
        out.contains("deployment.apps/web configured")
            && out.contains("configmap/settings unchanged"),
        "{out}"
    );
    let dep = k.ok(&["get", "deploy", "web", "-n", "shop", "-o", "json"]);
    let dep: serde_json::Value = serde_json::from_str(&dep).unwrap();
    assert_eq!(dep["spec"]["replicas"], 3);
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        "2"
    );
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(dep["metadata"]["generation"], 2);

    let table = k.ok(&["get", "deployments", "-n", "shop"]);
    assert_eq!(
        header(&table),
        vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{table}"
    );
    assert!(table.contains("0/3"), "{table}");
    let svc = k.ok(&["get", "svc", "-n", "shop"]);
    assert_eq!(
        header(&svc),
        vec![
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ],
        "{svc}"
    );
    assert!(svc.contains("10.43.") && svc.contains("80/TCP"), "{svc}");
    let secret = k.ok(&[
        "get",
        "secret",
        "creds",
        "-n",
        "shop",
        "-o",
        "jsonpath={.data.password}",
    ]);
    assert_eq!(secret, "aHVudGVyMg==");

    k.ok(&["label", "cm", "settings", "-n", "shop", "tier=backend"]);
    k.ok(&["annotate", "cm", "settings", "-n", "shop", "note=hello"]);
    let labeled = k.ok(&[
        "get",
        "cm",
        "-n",
        "shop",
        "-l",
        "tier=backend",
        "-o",
        "name",
    ]);
    assert_eq!(labeled.trim(), "configmap/settings");
    k.ok(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "shop",
        "-p",
        r#"{"data":{"mode":"slow"}}"#,
    ]);
    k.ok(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "shop",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/data/extra","value":"x"}]"#,
    ]);
    let data = k.ok(&[
        "get",
        "cm",
        "settings",
        "-n",
        "shop",
        "-o",
        "jsonpath={.data.mode}/{.data.extra}",
    ]);
    assert_eq!(data, "slow/x");
    k.ok(&["scale", "deployment", "web", "-n", "shop", "--replicas=5"]);
    let replicas = k.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "5");

    let described = k.ok(&["describe", "deployment", "web", "-n", "shop"]);
    assert!(
        described.contains("Replicas:") && described.contains("samples/wasm/http-echo.wasm"),
        "{described}"
    );
    let resources = k.ok(&["api-resources"]);
    assert!(
        resources.contains("deployments") && resources.contains("deploy"),
        "{resources}"
    );
    let can = k.run(&["auth", "can-i", "create", "pods"]);
    assert_eq!(
        String::from_utf8_lossy(&can.stdout).trim(),
        "yes",
        "{}",
        String::from_utf8_lossy(&can.stderr)
    );

    // get -w sees a change made while it watches
    let mut watch = k
        .command(&["get", "cm", "-n", "shop", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let stdout = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut created = false;
    // `eventually` panics if the ADDED line never shows up.
    eventually(20, "kubectl get -w to show the new configmap", || {
        while let Ok(line) = rx.try_recv() {
            seen.push(line);
        }
        if !created && seen.iter().any(|l| l.contains("settings")) {
            created = true;
            k.ok(&[
                "create",
                "configmap",
                "late",
                "-n",
                "shop",
                "--from-literal=a=b",
            ]);
        }
        let hit = seen
            .iter()
            .any(|l| l.contains("ADDED") && l.contains("late"));
        std::future::ready(hit.then_some(()))
    })
    .await;
    let _ = watch.kill();
    let _ = watch.wait();

    k.ok(&["delete", "deployment", "web", "-n", "shop"]);
    let gone = k.run(&["get", "deployment", "web", "-n", "shop"]);
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("NotFound"),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_typed_commands_send_protobuf() {
    let mut c = Cluster::start().await;
    let Some(k) = Kubectl::new(&c.kubeconfig_path()) else {
        return;
    };
    tokio::task::block_in_place(|| {
        k.ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=80",
        ]);
        let image = k.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].ports[0].protocol}/{.spec.replicas}",
        ]);
        assert_eq!(image, "TCP/2");
        k.ok(&[
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--type=NodePort",
        ]);
        let svc = k.ok(&["get", "svc", "web", "-o", "wide"]);
        assert!(
            svc.contains("NodePort") && svc.contains("80:3") && svc.contains("app=web"),
            "{svc}"
        );
        k.ok(&["create", "job", "once", "--image=samples/wasm/hello.wasm"]);
        let policy = k.ok(&[
            "get",
            "job",
            "once",
            "-o",
            "jsonpath={.spec.template.spec.restartPolicy}",
        ]);
        assert_eq!(policy, "Never");
        k.ok(&["create", "serviceaccount", "bot"]);
        let token = k.ok(&["create", "token", "bot"]);
        assert_eq!(token.split('.').count(), 3, "{token}");
        k.ok(&[
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=pods",
        ]);
        k.ok(&[
            "create",
            "rolebinding",
            "bot-reads",
            "--role=reader",
            "--serviceaccount=default:bot",
        ]);
        let can = k.ok(&[
            "auth",
            "can-i",
            "list",
            "pods",
            "--as=system:serviceaccount:default:bot",
        ]);
        assert_eq!(can.trim(), "yes");
        let cannot = k.run(&[
            "auth",
            "can-i",
            "delete",
            "pods",
            "--as=system:serviceaccount:default:bot",
        ]);
        assert_eq!(String::from_utf8_lossy(&cannot.stdout).trim(), "no");
        let who = k.ok(&["auth", "whoami"]);
        assert!(who.contains("admin"), "{who}");
        k.ok(&["create", "ns", "scratch"]);
        k.ok(&["delete", "ns", "scratch", "--dry-run=server"]);
        let ns = k.ok(&["get", "ns", "scratch", "-o", "jsonpath={.status.phase}"]);
        assert_eq!(ns, "Active");
        // NamespaceLifecycle refuses deleting `default`, dry run or not.
        let refused = k.run(&["delete", "ns", "default", "--dry-run=server"]);
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains(
                r#"namespaces "default" is forbidden: this namespace may not be deleted"#
            ),
            "{refused:?}"
        );
    });
    c.stop().await;
}
