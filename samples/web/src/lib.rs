//! web: the main container of the web + log-processor sample, a
//! `wasi:http/incoming-handler` component (wasm32-wasip2). Every request is
//! answered with a small page and appended to the access log in the pod's
//! shared emptyDir, which the log-processor sidecar tails.
//!
//! Env: `ACCESS_LOG` (default /shared/access.log). Log line format:
//! `<unix-millis> <METHOD> <path> <status>`. `/healthz` answers `ok` and is
//! logged too, so the kubelet's probes alone keep the sidecar busy.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use http_util::{Request, respond};
use wasi::http::types::{IncomingRequest, ResponseOutparam};

struct Web;

wasi::http::proxy::export!(Web);

impl wasi::exports::http::incoming_handler::Guest for Web {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::read(request);
        let (status, body) = match request.path() {
            "/healthz" => (200, "ok\n".to_string()),
            "/" => (200, "<h1>Hello from skiff's web sample</h1>\n".to_string()),
            other => (404, format!("no page at {other}\n")),
        };
        log_access(&request, status);
        respond(out, status, "text/html; charset=utf-8", body.as_bytes());
    }
}

fn log_access(request: &Request, status: u16) {
    let path = std::env::var("ACCESS_LOG").unwrap_or_else(|_| "/shared/access.log".to_string());
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let line = format!(
        "{millis} {} {} {status}\n",
        request.method, request.path_with_query
    );
    let result = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = result {
        eprintln!("web: cannot append to {path}: {e}");
    }
}
