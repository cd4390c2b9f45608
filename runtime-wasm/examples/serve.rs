//! A `wasmtime serve`-like driver of skiff's wasm runtime, for benchmarks:
//!
//! ```text
//! serve COMPONENT [--addr 127.0.0.1:8080]       serve one wasi:http pod until killed
//! serve COMPONENT --pods N [--logs DIR]         start N idle wasi:http pods, report RSS per pod
//! ```
//!
//! The second form prints one JSON line: pods, rss before/after, bytes per
//! idle pod, and whether every pod answered a request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use skiff_runtime_wasm::{
    HttpListen, InstanceSpec, OutputSink, PullOptions, WasmRuntime, WasmRuntimeConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Args {
    component: String,
    addr: SocketAddr,
    pods: usize,
    logs: Option<PathBuf>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut out = Args {
        component: String::new(),
        addr: "127.0.0.1:8080".parse()?,
        pods: 0,
        logs: None,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--addr" => out.addr = args.next().context("--addr needs a value")?.parse()?,
            "--pods" => out.pods = args.next().context("--pods needs a value")?.parse()?,
            "--logs" => out.logs = Some(args.next().context("--logs needs a value")?.into()),
            _ if out.component.is_empty() => out.component = a,
            _ => bail!("unexpected argument {a:?}"),
        }
    }
    if out.component.is_empty() {
        bail!("usage: serve COMPONENT [--addr ADDR] [--pods N [--logs DIR]]");
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cache = std::env::temp_dir().join("skiff-serve-cache");
    let rt = WasmRuntime::new(WasmRuntimeConfig {
        cache_dir: cache,
        ..Default::default()
    })?;
    let artifact = rt.pull(&args.component, &PullOptions::default()).await?;
    if args.pods == 0 {
        let instance = rt
            .run(
                &artifact,
                spec("serve", HttpListen::Addr(args.addr), None, None),
            )
            .await?;
        eprintln!(
            "serving {} on http://{} (pooling: {})",
            args.component,
            instance.local_addr().context("no address")?,
            rt.pooling()
        );
        tokio::signal::ctrl_c().await?;
        instance.stop();
        instance.wait().await;
        return Ok(());
    }

    // Warm up: one pod, one request, so code and runtime pages count in the baseline.
    let warm = rt
        .run(
            &artifact,
            spec("warm", HttpListen::Addr("127.0.0.1:0".parse()?), None, None),
        )
        .await?;
    get(warm.local_addr().context("no address")?).await?;
    warm.stop();
    warm.wait().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_bytes();
    let started = Instant::now();
    let mut pods = Vec::with_capacity(args.pods);
    for i in 0..args.pods {
        let (out, err) = match &args.logs {
            Some(dir) => {
                tokio::fs::create_dir_all(dir).await?;
                let open = |name: String| tokio::fs::File::create(dir.join(name));
                (
                    Some(Box::new(open(format!("{i}.out")).await?) as OutputSink),
                    Some(Box::new(open(format!("{i}.err")).await?) as OutputSink),
                )
            }
            None => (None, None),
        };
        pods.push(
            rt.run(
                &artifact,
                spec(
                    &format!("pod-{i}"),
                    HttpListen::Addr("127.0.0.1:0".parse()?),
                    out,
                    err,
                ),
            )
            .await?,
        );
    }
    let start_secs = started.elapsed().as_secs_f64();
    // Every pod answers, then goes back to idle (no store held).
    let mut ok = 0usize;
    for p in &pods {
        if get(p.local_addr().context("no address")?).await.is_ok() {
            ok += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_bytes();
    let per_pod = after.saturating_sub(before) / args.pods as u64;
    println!(
        "{{\"pods\":{},\"answered\":{ok},\"start_secs\":{start_secs:.3},\"rss_before\":{before},\"rss_after\":{after},\"bytes_per_idle_pod\":{per_pod},\"pooling\":{}}}",
        args.pods,
        rt.pooling()
    );
    for p in &pods {
        p.stop();
    }
    for p in &pods {
        p.wait().await;
    }
    Ok(())
}

fn spec(
    name: &str,
    listen: HttpListen,
    stdout: Option<OutputSink>,
    stderr: Option<OutputSink>,
) -> InstanceSpec {
    InstanceSpec {
        name: name.to_string(),
        args: vec![name.to_string()],
        env: vec![("POD_NAME".into(), name.to_string())],
        preopens: vec![],
        stdout,
        stderr,
        stdin: None,
        memory_limit_bytes: Some(128 << 20),
        cpu_limit_millicores: None,
        allow_outbound_network: false,
        listen: Some(listen),
    }
}

/// GET / and check for a 200.
async fn get(addr: SocketAddr) -> anyhow::Result<()> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    if !buf.starts_with(b"HTTP/1.1 200") {
        bail!("unexpected answer: {}", String::from_utf8_lossy(&buf));
    }
    Ok(())
}

/// Resident set size of this process (Linux; 0 elsewhere).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
