//! WASI p1 command modules written inline as WAT: output, exit codes,
//! traps, the memory limit (OOMKilled), stopping a tight loop, exec with
//! stdin, preopens (readOnly respected).

use std::time::{Duration, Instant};

use skiff_runtime_wasm::{ExitReason, Preopen};

use crate::support::*;

/// Prints "hello from wat\n" and returns from `_start`.
const HELLO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from wat\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 15))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

const EXIT3: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 3))))"#;

const TRAP: &str = r#"(module
  (memory (export "memory") 1)
  (func $boom unreachable)
  (func (export "_start") (call $boom)))"#;

/// Grows memory 1 MiB at a time until it fails, then traps.
const MEMORY_BOMB: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $grow
      (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable))"#;

const BUSY: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $spin (br $spin))))"#;

#[tokio::test]
async fn p1_hello_prints_and_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(dir.path());
    let image = wat_file(dir.path(), "hello.wat", HELLO);
    let artifact = rt.pull(&image, &pull_options()).await.expect("pull");
    assert_eq!(artifact.kind(), skiff_runtime_wasm::ArtifactKind::P1Module);
    let (out, err) = (Capture::default(), Capture::default());
    let instance = rt
        .run(&artifact, spec("hello", &["hello"], &out, &err))
        .await
        .expect("run");
    let status = instance.wait().await;
    assert_eq!(
        (status.exit_code, status.reason),
        (0, ExitReason::Completed),
        "{status:?}"
    );
    assert_eq!(out.text(), "hello from wat\n");
}

#[tokio::test]
async fn p1_exit_code_is_reported_as_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(dir.path());
    let artifact = rt
        .pull(&wat_file(dir.path(), "exit.wat", EXIT3), &pull_options())
        .await
        .expect("pull");
    let (out, err) = (Capture::default(), Capture::default());
    let status = rt
        .run(&artifact, spec("exit", &["exit"], &out, &err))
        .await
        .expect("run")
        .wait()
        .await;
    assert_eq!(
        (status.exit_code, status.reason),
        (3, ExitReason::Error),
        "{status:?}"
    );
}

#[tokio::test]
async fn trap_is_an_error_with_the_trap_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(dir.path());
    let artifact = rt
        .pull(&wat_file(dir.path(), "trap.wat", TRAP), &pull_options())
        .await
        .expect("pull");
    let (out, err) = (Capture::default(), Capture::default());
    let status = rt
        .run(&artifact, spec("trap", &["trap"], &out, &err))
        .await
        .expect("run")
        .wait()
        .await;
    assert_eq!(status.reason, ExitReason::Error, "{status:?}");
    assert_ne!(status.exit_code, 0);
    assert!(
        status.message.contains("unreachable"),
        "message: {}",
        status.message
    );
}

#[tokio::test]
async fn memory_bomb_under_a_limit_is_oom_killed_and_others_survive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(dir.path());
    let bomb = rt
        .pull(
            &wat_file(dir.path(), "bomb.wat", MEMORY_BOMB),
            &pull_options(),
        )
        .await
        .expect("pull");
    let hello = rt
        .pull(&wat_file(dir.path(), "hello.wat", HELLO), &pull_options())
        .await
        .expect("pull");
    let (out, err) = (Capture::default(), Capture::default());
    let mut s = spec("bomb", &["bomb"], &out, &err);
    s.memory_limit_bytes = Some(32 << 20);
    let status = rt.run(&bomb, s).await.expect("run").wait().await;
    assert_eq!(
        (status.exit_code, status.reason),
        (137, ExitReason::OOMKilled),
        "{status:?}"
    );
    // Another pod on the same runtime is unaffected.
    let (out2, err2) = (Capture::default(), Capture::default());
    let status = rt
        .run(&hello, spec("hello", &["hello"], &out2, &err2))
        .await
        .expect("run")
        .wait()
        .await;
    assert_eq!(status.reason, ExitReason::Completed);
}

#[tokio::test]
async fn busy_loop_is_stopped_within_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(dir.path());
    let artifact = rt
        .pull(&wat_file(dir.path(), "busy.wat", BUSY), &pull_options())
        .await
        .expect("pull");
    let (out, err) = (Capture::default(), Capture::default());
    let instance = rt
        .run(&artifact, spec("busy", &["busy"], &out, &err))
        .await
        .expect("run");
    // Let it spin a little, then stop it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while instance.usage().cpu_time < Duration::from_millis(50) {
        assert!(Instant::now() < deadline, "guest never ran");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(instance.try_status().is_none());
    let stopped_at = Instant::now();
    instance.stop();
    let status = tokio::time::timeout(Duration::from_secs(1), instance.wait())
        .await
        .expect("stopped within a second");
    assert!(stopped_at.elapsed() < Duration::from_secs(1));
    assert_eq!(
        (status.exit_code, status.reason),
        (137, ExitReason::Killed),
        "{status:?}"
    );
}

#[tokio::test]
async fn exec_reads_stdin_and_sees_env() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(dir.path());
    let toolbox = rt
        .pull(&sample("toolbox.wasm").to_string_lossy(), &pull_options())
        .await
        .expect("pull toolbox");
    let (out, err) = (Capture::default(), Capture::default());
    let mut s = spec("exec", &["cat"], &out, &err);
    s.stdin = Some(Box::new(std::io::Cursor::new(b"piped input\n".to_vec())));
    let status = rt.exec(&toolbox, s).await.expect("exec").wait().await;
    assert_eq!(
        status.reason,
        ExitReason::Completed,
        "{status:?} {}",
        err.text()
    );
    assert_eq!(out.text(), "piped input\n");

    let (out, err) = (Capture::default(), Capture::default());
    let mut s = spec("exec", &["printenv", "GREETING"], &out, &err);
    s.env = vec![("GREETING".into(), "hi there".into())];
    let status = rt.exec(&toolbox, s).await.expect("exec").wait().await;
    assert_eq!(status.reason, ExitReason::Completed, "{status:?}");
    assert_eq!(out.text().trim(), "hi there");
}

#[tokio::test]
async fn preopens_respect_read_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(dir.path());
    let data = tempfile::tempdir().expect("data dir");
    std::fs::write(data.path().join("app.conf"), "color=blue\n").expect("seed file");
    let toolbox = rt
        .pull(&sample("toolbox.wasm").to_string_lossy(), &pull_options())
        .await
        .expect("pull toolbox");
    let run = |args: &'static [&'static str], read_only: bool| {
        let rt = rt.clone();
        let toolbox = toolbox.clone();
        let host_path = data.path().to_path_buf();
        async move {
            let (out, err) = (Capture::default(), Capture::default());
            let mut s = spec("fs", args, &out, &err);
            s.preopens = vec![Preopen {
                host_path,
                guest_path: "/data".into(),
                read_only,
            }];
            let status = rt.exec(&toolbox, s).await.expect("exec").wait().await;
            (status, out.text())
        }
    };
    let (status, text) = run(&["cat", "/data/app.conf"], true).await;
    assert_eq!(
        (status.reason, text.as_str()),
        (ExitReason::Completed, "color=blue\n")
    );
    let (status, _) = run(&["write", "/data/new.txt", "x"], true).await;
    assert_eq!(
        status.reason,
        ExitReason::Error,
        "write to a read-only mount must fail"
    );
    assert!(!data.path().join("new.txt").exists());
    let (status, _) = run(&["write", "/data/new.txt", "x"], false).await;
    assert_eq!(status.reason, ExitReason::Completed, "{status:?}");
    assert!(data.path().join("new.txt").exists());
}
