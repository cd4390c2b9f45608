//! Image resolution and caching: paths and `file://` URLs, `.wat` text,
//! digests, the on-disk compiled cache reused by a fresh runtime, pull
//! policy `Never`, errors for missing or invalid images.

use skiff_runtime_wasm::{PullOptions, PullPolicy, WasmError, WasmRuntime};

use crate::support::*;

const NOOP: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

#[tokio::test]
async fn relative_path_file_url_and_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(&dir.path().join("cache"));
    wat_file(dir.path(), "noop.wat", NOOP);
    let opts = PullOptions {
        base_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let a = rt.pull("noop.wat", &opts).await.expect("relative path");
    let url = format!("file://{}", dir.path().join("noop.wat").display());
    let b = rt.pull(&url, &opts).await.expect("file url");
    assert_eq!(a.digest(), b.digest());
    assert!(a.digest().starts_with("sha256:") && a.digest().len() == 71);
    assert_eq!(b.image(), url);
}

#[tokio::test]
async fn compiled_cache_is_reused_by_a_new_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let image = sample("hello.wasm").to_string_lossy().into_owned();
    let first = runtime(&cache)
        .pull(&image, &pull_options())
        .await
        .expect("pull");
    let compiled: Vec<_> = walk(&cache.join("compiled"));
    assert_eq!(compiled.len(), 1, "{compiled:?}");
    let stamp = std::fs::metadata(&compiled[0])
        .and_then(|m| m.modified())
        .expect("mtime");

    let rt2 = runtime(&cache);
    let second = rt2.pull(&image, &pull_options()).await.expect("pull again");
    assert_eq!(first.digest(), second.digest());
    let after = std::fs::metadata(&compiled[0])
        .and_then(|m| m.modified())
        .expect("mtime");
    assert_eq!(
        stamp, after,
        "the cached compilation was loaded, not rewritten"
    );
    // And it runs.
    let (out, err) = (Capture::default(), Capture::default());
    let status = rt2
        .run(&second, spec("hello", &["hello"], &out, &err))
        .await
        .expect("run")
        .wait()
        .await;
    assert_eq!(status.exit_code, 0);
    assert!(out.text().starts_with("Hello from skiff"));
}

#[tokio::test]
async fn errors_for_missing_invalid_and_never_pulled_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime(&dir.path().join("cache"));
    let missing = dir.path().join("missing.wasm");
    assert!(matches!(
        rt.pull(&missing.to_string_lossy(), &pull_options()).await,
        Err(WasmError::Pull { .. })
    ));
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm at all").expect("write");
    assert!(matches!(
        rt.pull(&junk.to_string_lossy(), &pull_options()).await,
        Err(WasmError::Compile { .. })
    ));
    let never = PullOptions {
        policy: PullPolicy::Never,
        ..Default::default()
    };
    assert!(matches!(
        rt.pull("localhost:5999/nothing:v1", &never).await,
        Err(WasmError::NotPresent { .. })
    ));
    assert!(WasmRuntime::looks_like_wasm("samples/wasm/hello.wasm"));
    assert!(!WasmRuntime::looks_like_wasm("nginx:1.27"));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
