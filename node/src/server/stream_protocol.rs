//! What the streaming endpoints (`exec.rs`, `portforward.rs`) share across
//! transports (WebSocket in `websocket.rs`, SPDY in `spdy/`): the query
//! options kubectl sends, the `*.channel.k8s.io` protocol versions and their
//! negotiation, the job an exec or attach runs and the `Status` it ends
//! with, and pipes between a transport and the runtime's stdio.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::logs::{LogOptions, LogRegistry, follow_logs};
use crate::runtime::{ContainerId, ExecRequest, ImageInfo, InputSource, OutputSink, Runtime};

/// Remote-command protocol versions, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V1,
    V2,
    V3,
    V4,
    V5,
}

impl Version {
    /// The name as `Sec-WebSocket-Protocol` / `X-Stream-Protocol-Version` carries it.
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "channel.k8s.io",
            Version::V2 => "v2.channel.k8s.io",
            Version::V3 => "v3.channel.k8s.io",
            Version::V4 => "v4.channel.k8s.io",
            Version::V5 => "v5.channel.k8s.io",
        }
    }

    /// The version a negotiated name means (none negotiated: V1).
    pub fn from_name(name: Option<&str>) -> Version {
        [Version::V5, Version::V4, Version::V3, Version::V2]
            .into_iter()
            .find(|v| Some(v.name()) == name)
            .unwrap_or(Version::V1)
    }

    /// Whether the error channel carries a JSON `Status` (else plain text).
    pub fn json_status(self) -> bool {
        self >= Version::V4
    }
}

/// The header clients list their SPDY stream protocols in.
pub const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// The port-forward protocol name (SPDY).
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// What a request offers in `header` (comma-separated, possibly repeated), in its order.
pub fn offered(headers: &HeaderMap, header: &str) -> Vec<String> {
    headers
        .get_all(header)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The first protocol the client offers that the node supports (the client's preference wins).
pub fn negotiate(offered: &[String], supported: &[&'static str]) -> Option<&'static str> {
    offered
        .iter()
        .find_map(|o| supported.iter().find(|s| **s == o.as_str()).copied())
}

/// Whether the request asks to upgrade to `protocol` (e.g. `websocket`, `SPDY/3.1`).
pub fn wants_upgrade(headers: &HeaderMap, protocol: &str) -> bool {
    let connection = headers.get_all(http::header::CONNECTION).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    });
    connection
        && headers.get_all(http::header::UPGRADE).iter().any(|v| {
            v.to_str()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(protocol)
        })
}

/// The query's pairs, percent-decoded, repeated keys kept in order.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
            {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

fn flag(pairs: &[(String, String)], key: &str) -> bool {
    pairs
        .iter()
        .any(|(k, v)| k == key && matches!(v.as_str(), "true" | "1" | "True" | "TRUE"))
}

/// The streams and command an exec or attach asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl ExecOptions {
    /// Parses kubectl's query; `needs_command` for exec (attach takes none).
    pub fn parse(pairs: &[(String, String)], needs_command: bool) -> Result<ExecOptions, String> {
        let mut opts = ExecOptions {
            command: pairs
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect(),
            stdin: flag(pairs, "stdin"),
            stdout: flag(pairs, "stdout"),
            stderr: flag(pairs, "stderr"),
            tty: flag(pairs, "tty"),
        };
        // kubelet's rule: a TTY has no separate stderr stream (kubectl asks
        // stderr=false with -t); the guest's stderr goes to the terminal.
        opts.stderr &= !opts.tty;
        if needs_command && opts.command.is_empty() {
            return Err("you must specify at least one command for the container".into());
        }
        if !(opts.stdin || opts.stdout || opts.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        Ok(opts)
    }

    /// Where the guest's stderr goes: with a TTY to the terminal, which is
    /// the stdout stream (as a process on a pty writes both to it, whether
    /// or not the client asked for stderr); without one to the stderr
    /// stream when the client opened one.
    pub fn stderr_to(&self) -> StderrTo {
        match (self.tty, self.stdout, self.stderr) {
            (true, true, _) => StderrTo::Stdout,
            (false, _, true) => StderrTo::Stderr,
            _ => StderrTo::Nowhere,
        }
    }
}

/// The stream a guest's stderr is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StderrTo {
    Stderr,
    Stdout,
    Nowhere,
}

/// The guest's stdio as a transport wires it.
#[derive(Default)]
pub struct Stdio {
    pub stdin: Option<InputSource>,
    pub stdout: Option<OutputSink>,
    pub stderr: Option<OutputSink>,
}

/// What an exec or attach runs once the streams are up.
pub enum Job {
    /// A command in a container's context (the module already resolved).
    Exec {
        runtime: Arc<dyn Runtime>,
        container: ContainerId,
        module: Option<ImageInfo>,
        argv: Vec<String>,
    },
    /// The container's output from now on, read from its log.
    Attach {
        log: PathBuf,
        logs: Arc<LogRegistry>,
    },
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited {
        code: i32,
        message: String,
        argv: Vec<String>,
    },
    Failed(String),
}

impl Job {
    /// Runs the job to its end with `stdio`.
    pub async fn run(self, stdio: Stdio) -> Outcome {
        match self {
            Job::Exec {
                runtime,
                container,
                module,
                argv,
            } => {
                let request = ExecRequest {
                    module,
                    args: argv.clone(),
                    stdin: stdio.stdin,
                    stdout: stdio.stdout,
                    stderr: stdio.stderr,
                    timeout: None,
                };
                match runtime.exec(&container, request).await {
                    Ok(exit) => Outcome::Exited {
                        code: exit.code,
                        message: exit.message,
                        argv,
                    },
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
            Job::Attach { log, logs } => {
                // A wasm guest's stdin is not attachable: input is discarded.
                drop(stdio.stdin);
                let Some(mut out) = stdio.stdout.or(stdio.stderr) else {
                    return Outcome::Exited {
                        code: 0,
                        message: String::new(),
                        argv: Vec::new(),
                    };
                };
                let options = LogOptions {
                    tail_lines: Some(0),
                    ..Default::default()
                };
                let mut rx = match follow_logs(log, options, logs) {
                    Ok(rx) => rx,
                    Err(e) => return Outcome::Failed(e.to_string()),
                };
                while let Some(chunk) = rx.recv().await {
                    if out.write_all(&chunk).await.is_err() || out.flush().await.is_err() {
                        break;
                    }
                }
                let _ = out.shutdown().await;
                Outcome::Exited {
                    code: 0,
                    message: String::new(),
                    argv: Vec::new(),
                }
            }
        }
    }
}

impl Outcome {
    /// What goes on the error channel for `version`; `None` when there is nothing to say.
    pub fn encode(&self, version: Version) -> Option<Vec<u8>> {
        if version.json_status() {
            return Some(self.status().to_string().into_bytes());
        }
        match self {
            Outcome::Exited { code: 0, .. } => None,
            Outcome::Exited { .. } => Some(self.message().into_bytes()),
            Outcome::Failed(message) => Some(message.clone().into_bytes()),
        }
    }

    fn message(&self) -> String {
        match self {
            Outcome::Exited {
                code,
                message,
                argv,
            } => {
                let detail = if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                };
                format!(
                    "command terminated with non-zero exit code: error executing command {argv:?}, exit code {code}{detail}"
                )
            }
            Outcome::Failed(message) => message.clone(),
        }
    }

    /// The `metav1.Status` kubectl decodes (v4 and later).
    pub fn status(&self) -> serde_json::Value {
        match self {
            Outcome::Exited { code: 0, .. } => {
                serde_json::json!({"metadata": {}, "status": "Success"})
            }
            Outcome::Exited { code, .. } => {
                // kubectl parses the code as a uint8, as a process exit status is.
                let rc = match code & 0xff {
                    0 => 1,
                    rc => rc,
                };
                serde_json::json!({
                    "metadata": {},
                    "status": "Failure",
                    "message": self.message(),
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": rc.to_string()}]},
                })
            }
            Outcome::Failed(message) => serde_json::json!({
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": "InternalError",
                "code": 500,
            }),
        }
    }
}

/// Bytes read per chunk from a guest pipe or a pod connection.
pub const CHUNK: usize = 32 * 1024;

/// A sink for guest output whose bytes `forward` sends on; the task ends at
/// the guest's end of output or when `forward` reports the peer gone.
pub fn output_pipe<F, Fut>(mut forward: F) -> (OutputSink, JoinHandle<()>)
where
    F: FnMut(Bytes) -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let (sink, mut source) = tokio::io::duplex(CHUNK * 2);
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match source.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if !forward(Bytes::copy_from_slice(&buf[..n])).await {
                        return;
                    }
                }
            }
        }
    });
    (Box::new(sink), task)
}

/// A stdin for the guest fed from `rx`; it ends (EOF) when `rx` does.
pub fn input_pipe(mut rx: mpsc::Receiver<Bytes>) -> (InputSource, JoinHandle<()>) {
    let (source, mut sink) = tokio::io::duplex(CHUNK * 2);
    let task = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if sink.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = sink.shutdown().await;
    });
    (Box::new(source), task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubectl_exec_queries() {
        let pairs = query_pairs(Some(
            "command=ls&command=%2Fconfig&command=a+b&stdin=true&stdout=true&stderr=true&tty=false",
        ));
        let opts = ExecOptions::parse(&pairs, true).unwrap();
        assert_eq!(opts.command, ["ls", "/config", "a b"]);
        assert!(opts.stdin && opts.stdout && opts.stderr && !opts.tty);
        assert_eq!(opts.stderr_to(), StderrTo::Stderr);
        // A TTY: no stderr stream even when asked, the guest's stderr joins stdout.
        let opts = ExecOptions::parse(
            &query_pairs(Some("command=x&stdout=1&tty=1&stderr=1")),
            true,
        )
        .unwrap();
        assert!(opts.stdout && opts.tty && !opts.stdin && !opts.stderr);
        assert_eq!(opts.stderr_to(), StderrTo::Stdout);
        // What kubectl -t sends: stderr=false, and the guest's stderr still shows.
        let opts = ExecOptions::parse(
            &query_pairs(Some(
                "command=x&stdin=true&stdout=true&stderr=false&tty=true",
            )),
            true,
        )
        .unwrap();
        assert_eq!(opts.stderr_to(), StderrTo::Stdout);
        let opts = ExecOptions::parse(&query_pairs(Some("command=x&stdout=true")), true).unwrap();
        assert_eq!(opts.stderr_to(), StderrTo::Nowhere);
        assert!(
            ExecOptions::parse(&query_pairs(Some("command=x&stderr=1&tty=1")), true).is_err(),
            "with a TTY stderr alone is no stream at all"
        );
        assert!(ExecOptions::parse(&query_pairs(Some("stdout=true")), true).is_err());
        assert!(ExecOptions::parse(&query_pairs(Some("command=ls")), true).is_err());
        assert!(ExecOptions::parse(&query_pairs(Some("stdout=true")), false).is_ok());
        assert_eq!(
            query_pairs(Some("a=%zz&b=%4")),
            [
                ("a".to_string(), "%zz".to_string()),
                ("b".into(), "%4".into())
            ]
        );
    }

    #[test]
    fn negotiates_in_client_order() {
        let supported = [Version::V5.name(), Version::V4.name(), Version::V2.name()];
        let offer = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            negotiate(
                &offer(&["v4.channel.k8s.io", "v5.channel.k8s.io"]),
                &supported
            ),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(
            negotiate(
                &offer(&["v3.channel.k8s.io", "v2.channel.k8s.io"]),
                &supported
            ),
            Some("v2.channel.k8s.io")
        );
        assert_eq!(negotiate(&offer(&["other"]), &supported), None);
        let mut headers = HeaderMap::new();
        headers.append(PROTOCOL_HEADER, "v4.channel.k8s.io".parse().unwrap());
        headers.append(
            PROTOCOL_HEADER,
            "v3.channel.k8s.io, v2.channel.k8s.io".parse().unwrap(),
        );
        assert_eq!(
            offered(&headers, PROTOCOL_HEADER),
            offer(&[
                "v4.channel.k8s.io",
                "v3.channel.k8s.io",
                "v2.channel.k8s.io"
            ])
        );
        assert_eq!(Version::from_name(Some("v5.channel.k8s.io")), Version::V5);
        assert_eq!(Version::from_name(None), Version::V1);
    }

    #[test]
    fn detects_upgrades() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONNECTION,
            "keep-alive, Upgrade".parse().unwrap(),
        );
        headers.insert(http::header::UPGRADE, "SPDY/3.1".parse().unwrap());
        assert!(wants_upgrade(&headers, "spdy/3.1"));
        assert!(!wants_upgrade(&headers, "websocket"));
    }

    #[test]
    fn statuses_match_kubernetes() {
        let ok = Outcome::Exited {
            code: 0,
            message: String::new(),
            argv: vec!["ls".into()],
        };
        assert_eq!(
            ok.status(),
            serde_json::json!({"metadata": {}, "status": "Success"})
        );
        assert_eq!(ok.encode(Version::V3), None);
        let failed = Outcome::Exited {
            code: 3,
            message: String::new(),
            argv: vec!["false".into()],
        };
        let status = failed.status();
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(
            status["details"]["causes"][0],
            serde_json::json!({"reason": "ExitCode", "message": "3"})
        );
        assert!(status["message"].as_str().unwrap().contains("exit code 3"));
        assert!(
            String::from_utf8(failed.encode(Version::V2).unwrap())
                .unwrap()
                .starts_with("command terminated")
        );
        let big = Outcome::Exited {
            code: 256,
            message: String::new(),
            argv: vec![],
        };
        assert_eq!(big.status()["details"]["causes"][0]["message"], "1");
        let err = Outcome::Failed("boom".into());
        assert_eq!(err.status()["status"], "Failure");
        assert_eq!(err.encode(Version::V1).unwrap(), b"boom");
    }

    #[tokio::test]
    async fn pipes_carry_bytes_and_end() {
        let (tx, rx) = mpsc::channel(4);
        let (mut stdin, feeder) = input_pipe(rx);
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        drop(tx);
        let mut got = Vec::new();
        stdin.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"abc");
        feeder.await.unwrap();

        let (out_tx, mut out_rx) = mpsc::channel(4);
        let (mut sink, pump) = output_pipe(move |b| {
            let out_tx = out_tx.clone();
            async move { out_tx.send(b).await.is_ok() }
        });
        sink.write_all(b"xyz").await.unwrap();
        sink.shutdown().await.unwrap();
        drop(sink);
        pump.await.unwrap();
        assert_eq!(out_rx.recv().await.as_deref(), Some(&b"xyz"[..]));
    }
}
