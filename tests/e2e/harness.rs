//! Starting and stopping a real `skiff up` for a test, and the small helpers
//! every scenario needs: kubectl with its own HOME, a kube-rs client, and
//! polling with a deadline (never a bare sleep).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root: `skiff up` runs here so sample image paths resolve.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `skiff` binary under test: `SKIFF_E2E_BIN` when set (worktrees that
/// share one target directory overwrite each other's `target/debug/skiff`,
/// so point it at the `target/debug/deps/skiff-<hash>` of your own build),
/// else the one cargo built for this test binary.
pub fn skiff_bin() -> PathBuf {
    std::env::var_os("SKIFF_E2E_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_skiff")))
}

/// A running `skiff up` owned by one test; stopped (SIGTERM) on drop.
pub struct Cluster {
    child: Option<Child>,
    pub data_dir: tempfile::TempDir,
    pub home: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    log_path: PathBuf,
    extra_args: Vec<String>,
    /// The API address; port 0 until the first start picked one, then kept
    /// so clients survive a restart.
    listen: String,
}

impl Cluster {
    /// Starts `skiff up` on free ports and waits until the API answers /readyz
    /// and the node has registered.
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// Like [`Cluster::start`] with extra `skiff up` flags.
    pub fn start_with(extra_args: &[&str]) -> Cluster {
        Cluster::start_on(tempfile::tempdir().expect("temp data dir"), extra_args)
    }

    /// Starts `skiff up` on an existing data directory (e.g. a restored one).
    pub fn start_on(data_dir: tempfile::TempDir, extra_args: &[&str]) -> Cluster {
        let home = tempfile::tempdir().expect("temp home");
        let kubeconfig = data_dir.path().join("kubeconfig.yaml");
        let log_path = data_dir.path().join("skiff.log");
        let mut cluster = Cluster {
            child: None,
            data_dir,
            home,
            kubeconfig,
            log_path,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            listen: "127.0.0.1:0".into(),
        };
        cluster.launch();
        cluster
    }

    fn launch(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let child = Command::new(skiff_bin())
            .arg("up")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args([
                "--listen",
                &self.listen,
                "--node-listen",
                "127.0.0.1:0",
                "--node-name",
                "skiff-test",
            ])
            .args(&self.extra_args)
            .current_dir(repo_root())
            .env("SKIFF_LOG", "info,skiff=debug")
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn skiff up");
        self.child = Some(child);
        let kubeconfig = self.kubeconfig.clone();
        self.wait_for(
            "kubeconfig.yaml to be written",
            Duration::from_secs(60),
            || kubeconfig.exists(),
        );
        self.listen = self
            .api_http()
            .base
            .trim_start_matches("https://")
            .to_string();
        self.wait_for("/readyz", Duration::from_secs(30), || {
            self.kubectl_output(&["get", "--raw", "/readyz"])
                .status
                .success()
        });
        self.wait_for("the node to register", Duration::from_secs(30), || {
            String::from_utf8_lossy(&self.kubectl_output(&["get", "nodes", "-o", "name"]).stdout)
                .contains("node/")
        });
    }

    /// Stops skiff with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "skiff did not stop within 30 s of SIGTERM\n{}",
                self.log_tail()
            );
        }
    }

    /// Stops and starts skiff on the same data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The last lines of skiff's own log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Runs kubectl 1.32 with this cluster's kubeconfig and a private HOME.
    pub fn kubectl_output(&self, args: &[&str]) -> Output {
        self.kubectl_at("/usr/bin/kubectl", args, None)
    }

    /// Runs a kubectl binary with optional stdin.
    pub fn kubectl_at(&self, kubectl: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(kubectl);
        command
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn kubectl");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("kubectl output")
    }

    /// Runs kubectl and returns stdout, panicking with stderr and skiff's log on failure.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_stdin(args, None)
    }

    /// `kubectl get ARGS -o jsonpath=PATH`'s output; empty when the get fails
    /// (e.g. the object does not exist yet), for polling.
    pub fn jsonpath(&self, args: &[&str], path: &str) -> String {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        let path = format!("jsonpath={path}");
        all.extend_from_slice(&["-o", &path]);
        String::from_utf8_lossy(&self.kubectl_output(&all).stdout).into_owned()
    }

    /// `kubectl get ARGS -o json`, parsed; panics when the get fails.
    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl(&all)).expect("kubectl json")
    }

    /// `kubectl apply -f -` of a manifest.
    pub fn apply(&self, manifest: &str) -> String {
        self.kubectl_stdin(&["apply", "-f", "-"], Some(manifest))
    }

    /// Like [`Cluster::kubectl`], feeding `stdin`.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let output = self.kubectl_at("/usr/bin/kubectl", args, stdin);
        if !output.status.success() {
            panic!(
                "kubectl {} failed: {}\n--- skiff log ---\n{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr),
                self.log_tail()
            );
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A kube-rs client for this cluster.
    pub async fn client(&self) -> kube::Client {
        let yaml = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&yaml).expect("parse kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("kube config");
        kube::Client::try_from(config).expect("kube client")
    }

    /// Polls `check` every 50 ms until it holds, panicking after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if check() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- skiff log ---\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The data directory path.
    pub fn dir(&self) -> &Path {
        self.data_dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Raw HTTPS access to the API with the admin credentials of the kubeconfig.
pub struct ApiHttp {
    pub client: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Cluster {
    /// An HTTPS client trusting the cluster CA, and the admin token.
    pub fn api_http(&self) -> ApiHttp {
        use base64::Engine as _;
        let yaml = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let config: serde_yaml::Value = serde_yaml::from_str(&yaml).expect("kubeconfig yaml");
        let cluster = &config["clusters"][0]["cluster"];
        let base = cluster["server"]
            .as_str()
            .expect("server")
            .trim_end_matches('/')
            .to_string();
        let ca = base64::engine::general_purpose::STANDARD
            .decode(
                cluster["certificate-authority-data"]
                    .as_str()
                    .expect("CA data"),
            )
            .expect("CA base64");
        let token = config["users"][0]["user"]["token"]
            .as_str()
            .expect("token")
            .to_string();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA pem"))
            .build()
            .expect("https client");
        ApiHttp {
            client,
            base,
            token,
        }
    }
}
