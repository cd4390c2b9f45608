//! The cpu limit holds a busy guest to its share: a tight loop limited to
//! 100m uses about a tenth of a core over two seconds, measured both by the
//! runtime's own accounting and by the process's cpu time (this binary runs
//! only this test, so the process's time is the guest's plus overhead).

use std::time::{Duration, Instant};

use skiff_runtime_wasm::{ExitReason, InstanceSpec, WasmRuntime, WasmRuntimeConfig};

const BUSY: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $spin (br $spin))))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_guest_limited_to_100m_uses_about_a_tenth_of_a_core() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = WasmRuntime::new(WasmRuntimeConfig {
        cache_dir: dir.path().to_path_buf(),
        max_instances: 8,
        ..Default::default()
    })
    .expect("runtime");
    let image = dir.path().join("busy.wat");
    std::fs::write(&image, BUSY).expect("write");
    let artifact = rt
        .pull(&image.to_string_lossy(), &Default::default())
        .await
        .expect("pull");

    let cpu_before = process_cpu();
    let started = Instant::now();
    let instance = rt
        .run(
            &artifact,
            InstanceSpec {
                name: "busy".into(),
                args: vec!["busy".into()],
                env: vec![],
                preopens: vec![],
                stdout: None,
                stderr: None,
                stdin: None,
                memory_limit_bytes: None,
                cpu_limit_millicores: Some(100),
                allow_outbound_network: false,
                listen: None,
            },
        )
        .await
        .expect("run");
    // Poll (not sleep-and-hope) until two seconds of wall time have passed.
    while started.elapsed() < Duration::from_secs(2) {
        assert!(
            instance.try_status().is_none(),
            "the guest must keep running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    let guest = instance.usage().cpu_time.as_secs_f64();
    let process = process_cpu() - cpu_before;
    instance.stop();
    assert_eq!(instance.wait().await.reason, ExitReason::Killed);

    let guest_share = guest / wall;
    let process_share = process / wall;
    eprintln!(
        "wall {wall:.2}s guest {guest:.3}s ({guest_share:.3} core) process {process:.3}s ({process_share:.3} core)"
    );
    assert!(
        guest_share > 0.05,
        "the guest must get its share: {guest_share:.3}"
    );
    assert!(guest_share < 0.2, "guest used {guest_share:.3} of a core");
    if process_cpu_available().is_some() {
        assert!(
            process_share < 0.25,
            "process used {process_share:.3} of a core"
        );
    }
}

/// This process's user+system cpu seconds (Linux; 0 elsewhere).
fn process_cpu() -> f64 {
    process_cpu_available().unwrap_or(0.0)
}

fn process_cpu_available() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
