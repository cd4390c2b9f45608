//! Shared test helpers: a runtime on a temporary cache directory, a
//! capturing output sink, spec builders, and a tiny HTTP/1.1 client.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use skiff_runtime_wasm::{InstanceSpec, OutputSink, PullOptions, WasmRuntime, WasmRuntimeConfig};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A runtime whose caches live in `dir`, sized small for tests.
pub fn runtime(dir: &Path) -> WasmRuntime {
    WasmRuntime::new(WasmRuntimeConfig {
        cache_dir: dir.to_path_buf(),
        max_instances: 64,
        ..Default::default()
    })
    .expect("runtime")
}

/// Path of a committed sample.
pub fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../samples/wasm")
        .join(name)
}

/// Writes `wat` to `dir/name` and returns its path as a string.
pub fn wat_file(dir: &Path, name: &str, wat: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, wat).expect("write wat");
    path.to_string_lossy().into_owned()
}

pub fn pull_options() -> PullOptions {
    PullOptions::default()
}

/// An output sink whose bytes tests can read back.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn sink(&self) -> OutputSink {
        Box::new(self.clone())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("capture lock")).into_owned()
    }
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A spec with stdout/stderr captured and nothing else set.
pub fn spec(name: &str, args: &[&str], out: &Capture, err: &Capture) -> InstanceSpec {
    InstanceSpec {
        name: name.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        preopens: Vec::new(),
        stdout: Some(out.sink()),
        stderr: Some(err.sink()),
        stdin: None,
        memory_limit_bytes: None,
        cpu_limit_millicores: None,
        allow_outbound_network: false,
        listen: None,
    }
}

/// Sends one HTTP/1.1 request and returns (status, body).
pub async fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("response within 10 s")
        .expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    )
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
