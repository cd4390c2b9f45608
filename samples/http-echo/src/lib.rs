//! http-echo: a `wasi:http/incoming-handler` component (wasm32-wasip2),
//! instantiated by the node once per request.
//!
//! Routes:
//! - `GET /healthz` → `ok` (503 while the file named by `UNHEALTHY_FILE`
//!   exists, so a test can make probes fail through `kubectl exec`);
//! - `GET /config` → JSON with the contents of the mounted ConfigMap file
//!   named by `CONFIG_FILE` (default /config/app.conf) and whether
//!   `SECRET_TOKEN` is set — never its value;
//! - `GET /status/<code>` → an empty answer with that status code;
//! - `GET /fetch/<host:port>/<path>` → JSON `{"status","body","error"}` of an
//!   outgoing `http://host:port/path` request (wasi:http outgoing-handler),
//!   which the node refuses unless the pod allows outbound network;
//! - anything else → JSON echo of method, path, headers and body, plus the
//!   pod name from `POD_NAME` when set.

use http_util::{Request, json_string, respond};
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, IncomingRequest, OutgoingRequest, ResponseOutparam, Scheme};

struct HttpEcho;

wasi::http::proxy::export!(HttpEcho);

impl wasi::exports::http::incoming_handler::Guest for HttpEcho {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::read(request);
        let path = request.path().to_string();
        match path.as_str() {
            "/healthz" => healthz(out),
            "/config" => config(out),
            _ if path.starts_with("/fetch/") => fetch(&path["/fetch/".len()..], out),
            _ => match path
                .strip_prefix("/status/")
                .and_then(|c| c.parse::<u16>().ok())
            {
                Some(code) if (100..=599).contains(&code) => respond(out, code, "text/plain", b""),
                _ => echo(&request, out),
            },
        }
    }
}

fn healthz(out: ResponseOutparam) {
    let unhealthy = std::env::var("UNHEALTHY_FILE")
        .ok()
        .is_some_and(|f| std::path::Path::new(&f).exists());
    if unhealthy {
        respond(out, 503, "text/plain", b"unhealthy\n");
    } else {
        respond(out, 200, "text/plain", b"ok\n");
    }
}

fn config(out: ResponseOutparam) {
    let file = std::env::var("CONFIG_FILE").unwrap_or_else(|_| "/config/app.conf".to_string());
    let (content, error) = match std::fs::read_to_string(&file) {
        Ok(text) => (json_string(&text), "null".to_string()),
        Err(e) => ("null".to_string(), json_string(&e.to_string())),
    };
    let secret_set = std::env::var("SECRET_TOKEN").is_ok_and(|v| !v.is_empty());
    let body = format!(
        "{{\"configFile\":{},\"config\":{content},\"error\":{error},\"secretTokenSet\":{secret_set}}}\n",
        json_string(&file)
    );
    respond(out, 200, "application/json", body.as_bytes());
}

fn echo(request: &Request, out: ResponseOutparam) {
    let headers: Vec<String> = request
        .headers
        .iter()
        .map(|(k, v)| format!("[{},{}]", json_string(k), json_string(v)))
        .collect();
    let pod = std::env::var("POD_NAME")
        .map(|p| json_string(&p))
        .unwrap_or_else(|_| "null".to_string());
    let body = format!(
        "{{\"method\":{},\"path\":{},\"headers\":[{}],\"body\":{},\"pod\":{pod}}}\n",
        json_string(&request.method),
        json_string(&request.path_with_query),
        headers.join(","),
        json_string(&String::from_utf8_lossy(&request.body)),
    );
    respond(out, 200, "application/json", body.as_bytes());
}

fn fetch(target: &str, out: ResponseOutparam) {
    let (authority, path) = match target.split_once('/') {
        Some((a, p)) => (a, format!("/{p}")),
        None => (target, "/".to_string()),
    };
    let answer = |status: Option<u16>, body: &str, error: Option<String>| {
        let status = status.map_or("null".to_string(), |s| s.to_string());
        let error = error.map_or("null".to_string(), |e| json_string(&e));
        format!(
            "{{\"status\":{status},\"body\":{},\"error\":{error}}}\n",
            json_string(body)
        )
    };
    let request = OutgoingRequest::new(Fields::new());
    let _ = request.set_scheme(Some(&Scheme::Http));
    let _ = request.set_authority(Some(authority));
    let _ = request.set_path_with_query(Some(&path));
    let body = match outgoing_handler::handle(request, None) {
        Err(e) => answer(None, "", Some(format!("{e:?}"))),
        Ok(pending) => {
            pending.subscribe().block();
            match pending.get() {
                Some(Ok(Ok(response))) => {
                    let status = response.status();
                    let mut bytes = Vec::new();
                    if let Ok(body) = response.consume()
                        && let Ok(stream) = body.stream()
                    {
                        while let Ok(chunk) = stream.blocking_read(64 * 1024) {
                            bytes.extend(chunk);
                        }
                    }
                    answer(Some(status), &String::from_utf8_lossy(&bytes), None)
                }
                Some(Ok(Err(e))) => answer(None, "", Some(format!("{e:?}"))),
                _ => answer(None, "", Some("no response".to_string())),
            }
        }
    };
    respond(out, 200, "application/json", body.as_bytes());
}
