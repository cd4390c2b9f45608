//! Two `skiff server` members: the second joins the first with the join
//! token it printed (fetching the cluster's key material, then joining the
//! Raft group), and objects written through either API server are read
//! through the other. A wrong token is refused.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::repo_root;

struct Member {
    child: Child,
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Member {
    fn start(extra: &[&str]) -> Member {
        let dir = tempfile::tempdir().expect("data dir");
        let home = tempfile::tempdir().expect("home");
        let log = std::fs::File::create(dir.path().join("skiff.log")).expect("log");
        let child = Command::new(crate::harness::skiff_bin())
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .current_dir(repo_root())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn skiff server");
        Member { child, dir, home }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("skiff.log")).unwrap_or_default()
    }

    fn kubeconfig(&self) -> std::path::PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("/usr/bin/kubectl")
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.home.path())
            .output()
            .expect("kubectl")
    }

    /// The join command's URL and token, once the member printed them.
    fn join_args(&self) -> Option<(String, String)> {
        let log = self.log();
        let line = log.lines().find(|l| l.contains("skiff server --join"))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = |flag: &str| {
            words
                .iter()
                .position(|w| *w == flag)
                .and_then(|i| words.get(i + 1))
        };
        Some((at("--join")?.to_string(), at("--token")?.to_string()))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, members: &[&Member], timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() > deadline {
            let logs: Vec<String> = members.iter().map(|m| m.log()).collect();
            panic!(
                "timed out waiting for {what}\n--- logs ---\n{}",
                logs.join("\n---\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ready(member: &Member) -> bool {
    member.kubeconfig().exists()
        && member
            .kubectl(&["get", "--raw", "/readyz"])
            .status
            .success()
}

fn has_config_map(member: &Member, name: &str) -> bool {
    member
        .kubectl(&["get", "configmap", name, "-o", "name"])
        .status
        .success()
}

#[test]
fn second_member_joins_with_the_token_and_serves_the_same_data() {
    let first = Member::start(&[]);
    wait_for(
        "the first member",
        &[&first],
        Duration::from_secs(60),
        || ready(&first) && first.join_args().is_some(),
    );
    let (url, token) = first.join_args().expect("the join command line");

    // A wrong secret never gets the key material.
    let wrong = token
        .rsplit_once(':')
        .map(|(head, _)| format!("{head}:not-the-secret"))
        .expect("token shape");
    let refused = Command::new(crate::harness::skiff_bin())
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--join",
            &url,
            "--token",
            &wrong,
            "--data-dir",
        ])
        .arg(tempfile::tempdir().expect("dir").path())
        .output()
        .expect("run refused join");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("refused the join token"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    let second = Member::start(&["--join", &url, "--token", &token]);
    wait_for(
        "the second member",
        &[&first, &second],
        Duration::from_secs(90),
        || ready(&second),
    );
    assert!(Path::new(&second.dir.path().join("pki/ca.crt")).exists());

    let created = first.kubectl(&["create", "configmap", "from-first", "--from-literal=k=1"]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    wait_for(
        "the write through the first member on the second",
        &[&first, &second],
        Duration::from_secs(30),
        || has_config_map(&second, "from-first"),
    );
    let created = second.kubectl(&["create", "configmap", "from-second", "--from-literal=k=2"]);
    assert!(
        created.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&created.stderr),
        second.log()
    );
    assert!(has_config_map(&first, "from-second"));
}
