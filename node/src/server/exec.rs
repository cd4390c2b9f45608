//! `/exec/{ns}/{pod}/{container}` and `/attach/{ns}/{pod}/{container}`:
//! `kubectl exec` and `kubectl attach` over WebSocket (`v5`..`v1.channel.k8s.io`,
//! kubectl 1.29+) or SPDY/3.1 (`X-Stream-Protocol-Version: v4`..`v2`, older
//! kubectl). The command runs through `exec_module::resolve` and
//! `Runtime::exec`; attach follows the container's log. Either way the
//! client gets stdout/stderr as they are written and a `Status` at the end.
//! A client that goes away (WebSocket closed or dropped, SPDY connection
//! dropped or its error stream reset) ends the session at once: the job's
//! future is dropped, which stops the command (`Runtime::exec`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::spdy::{self, Session, Stream};
use super::stream_protocol::{
    ExecOptions, Job, Outcome, PROTOCOL_HEADER, StderrTo, Stdio, Version, input_pipe, negotiate,
    offered, output_pipe, query_pairs, wants_upgrade,
};
use super::websocket::{self, CLOSE, ERROR, RESIZE, STDERR, STDIN, STDOUT, channel_message};
use super::{find_pod, status_error};
use crate::pods::context::NodeContext;
use crate::pods::exec_module;

/// WebSocket subprotocols, most preferred first.
const WEBSOCKET_PROTOCOLS: [&str; 5] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// SPDY stream protocols (v5 is WebSocket-only).
const SPDY_PROTOCOLS: [&str; 3] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
];
/// How long an SPDY client has to open the streams it asked for.
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn exec(
    State(ctx): State<Arc<NodeContext>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    handle(ctx, true, &ns, &pod, &container, request).await
}

pub async fn attach(
    State(ctx): State<Arc<NodeContext>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    handle(ctx, false, &ns, &pod, &container, request).await
}

async fn handle(
    ctx: Arc<NodeContext>,
    is_exec: bool,
    ns: &str,
    pod: &str,
    container: &str,
    request: Request,
) -> Response {
    let opts = match ExecOptions::parse(&query_pairs(request.uri().query()), is_exec) {
        Ok(opts) => opts,
        Err(message) => return status_error(StatusCode::BAD_REQUEST, message),
    };
    let job = match prepare(&ctx, is_exec, ns, pod, container, &opts).await {
        Ok(job) => job,
        Err(response) => return response,
    };
    let span =
        tracing::info_span!("exec", pod = %format!("{ns}/{pod}"), container, attach = !is_exec);
    tracing::debug!(parent: &span, command = ?opts.command, stdin = opts.stdin, tty = opts.tty, "starting a stream session");
    let headers = request.headers();
    if wants_upgrade(headers, "websocket") {
        let (mut parts, _) = request.into_parts();
        let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => ws,
            Err(rejection) => return rejection.into_response(),
        };
        return ws.protocols(WEBSOCKET_PROTOCOLS).on_upgrade(move |socket| {
            tracing::Instrument::instrument(websocket_session(socket, job, opts), span)
        });
    }
    if wants_upgrade(headers, spdy::UPGRADE) {
        let offers = offered(headers, PROTOCOL_HEADER);
        let protocol = negotiate(&offers, &SPDY_PROTOCOLS);
        if protocol.is_none() && !offers.is_empty() {
            return status_error(
                StatusCode::FORBIDDEN,
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offers:?}, server supports {SPDY_PROTOCOLS:?}"
                ),
            );
        }
        let version = Version::from_name(protocol);
        let mut request = request;
        return spdy::upgrade(&mut request, protocol, move |io| {
            tracing::Instrument::instrument(spdy_session(io, version, job, opts), span)
        });
    }
    status_error(StatusCode::BAD_REQUEST, "Upgrade request required")
}

/// Checks the pod and container and resolves what to run, before upgrading.
async fn prepare(
    ctx: &NodeContext,
    is_exec: bool,
    ns: &str,
    pod: &str,
    container: &str,
    opts: &ExecOptions,
) -> Result<Job, Response> {
    let view = find_pod(ctx, ns, pod)?;
    let Some(c) = view.containers.get(container) else {
        return Err(status_error(
            StatusCode::BAD_REQUEST,
            format!("container {container} is not valid for pod {pod}"),
        ));
    };
    let not_running = || {
        status_error(
            StatusCode::BAD_REQUEST,
            format!("container \"{container}\" in pod \"{pod}\" is not running"),
        )
    };
    let Some(id) = c.id.clone() else {
        return Err(not_running());
    };
    if !matches!(ctx.runtime.status(&id), Ok(None)) {
        return Err(not_running());
    }
    if !is_exec {
        let Some(log) = c.log_path.clone() else {
            return Err(not_running());
        };
        return Ok(Job::Attach {
            log,
            logs: ctx.logs.clone(),
        });
    }
    match exec_module::resolve(
        ctx.runtime.as_ref(),
        &opts.command,
        &c.mounts,
        ctx.config.exec_toolbox.as_deref(),
    )
    .await
    {
        Ok((module, argv)) => Ok(Job::Exec {
            runtime: ctx.runtime.clone(),
            container: id,
            module,
            argv,
        }),
        Err(e) => Err(status_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to exec in container: {e}"),
        )),
    }
}

/// An output pipe that sends each chunk as a message on `channel`.
fn websocket_output(
    channel: u8,
    tx: &mpsc::Sender<Message>,
) -> (crate::runtime::OutputSink, JoinHandle<()>) {
    let tx = tx.clone();
    output_pipe(move |bytes| {
        let tx = tx.clone();
        async move { tx.send(channel_message(channel, &bytes)).await.is_ok() }
    })
}

async fn websocket_session(socket: WebSocket, job: Job, opts: ExecOptions) {
    let version = Version::from_name(socket.protocol().and_then(|p| p.to_str().ok()));
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel::<Message>(32);
    let writer = websocket::spawn_writer(sink, rx);
    // An empty message on the lowest writable channel tells the client the session is up.
    let hello = if opts.stdout {
        STDOUT
    } else if opts.stderr {
        STDERR
    } else {
        ERROR
    };
    let _ = tx.send(channel_message(hello, &[])).await;

    let mut pumps = Vec::new();
    let mut stdio = Stdio::default();
    let mut stdin_tx = None;
    let mut stdin_pump = None;
    if opts.stdin {
        let (stdin, rx) = mpsc::channel::<Bytes>(16);
        let (source, task) = input_pipe(rx);
        stdio.stdin = Some(source);
        stdin_tx = Some(stdin);
        stdin_pump = Some(task);
    }
    if opts.stdout {
        let (sink, task) = websocket_output(STDOUT, &tx);
        stdio.stdout = Some(sink);
        pumps.push(task);
    }
    let stderr_channel = match opts.stderr_to() {
        StderrTo::Stderr => Some(STDERR),
        StderrTo::Stdout => Some(STDOUT),
        StderrTo::Nowhere => None,
    };
    if let Some(channel) = stderr_channel {
        let (sink, task) = websocket_output(channel, &tx);
        stdio.stderr = Some(sink);
        pumps.push(task);
    }
    // Ends when the client closes the socket or the connection drops.
    let mut reader = tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            let Message::Binary(bytes) = message else {
                if matches!(message, Message::Close(_)) {
                    break;
                }
                continue;
            };
            match websocket::split_channel(&bytes) {
                Some((STDIN, data)) if !data.is_empty() => {
                    if let Some(stdin) = &stdin_tx
                        && stdin.send(data).await.is_err()
                    {
                        stdin_tx = None;
                    }
                }
                Some((CLOSE, data)) if version >= Version::V5 && data.first() == Some(&STDIN) => {
                    stdin_tx = None
                }
                Some((RESIZE, _)) => {}
                _ => {}
            }
        }
    });

    let outcome = tokio::select! {
        outcome = job.run(stdio) => outcome,
        _ = &mut reader => {
            abandon(pumps, stdin_pump);
            writer.abort();
            return;
        }
    };
    finish_pumps(pumps, stdin_pump).await;
    if let Some(status) = outcome.encode(version) {
        let _ = tx.send(channel_message(ERROR, &status)).await;
    }
    log_outcome(&outcome);
    drop(tx);
    let _ = writer.await;
    // The client answers the close; give it a moment, then stop reading.
    if tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .is_err()
    {
        tracing::debug!("client did not close the websocket");
    }
}

/// Waits for the output pumps (they end once the runtime drops the guest's
/// stdio) and stops feeding stdin to a guest that is gone.
async fn finish_pumps(pumps: Vec<JoinHandle<()>>, stdin_pump: Option<JoinHandle<()>>) {
    for pump in pumps {
        let _ = pump.await;
    }
    if let Some(pump) = stdin_pump {
        pump.abort();
    }
}

/// After the client went away (the job's future is dropped, so the command
/// is stopping): nothing will read the output any more.
fn abandon(pumps: Vec<JoinHandle<()>>, stdin_pump: Option<JoinHandle<()>>) {
    tracing::info!("the client went away; ended the session and stopped its command");
    for pump in pumps.into_iter().chain(stdin_pump) {
        pump.abort();
    }
}

fn log_outcome(outcome: &Outcome) {
    match outcome {
        Outcome::Exited { code, .. } => tracing::debug!(code, "stream session finished"),
        Outcome::Failed(message) => tracing::info!(%message, "exec failed"),
    }
}

/// Waits until the client has opened every stream `opts` asks for.
async fn expected_streams(
    session: &mut Session,
    opts: &ExecOptions,
) -> Option<HashMap<String, Stream>> {
    let mut wanted = vec!["error"];
    wanted.extend(
        [
            (opts.stdin, "stdin"),
            (opts.stdout, "stdout"),
            (opts.stderr, "stderr"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| name),
    );
    let mut streams = HashMap::new();
    let deadline = tokio::time::sleep(STREAM_CREATION_TIMEOUT);
    tokio::pin!(deadline);
    while !wanted.iter().all(|w| streams.contains_key(*w)) {
        tokio::select! {
            stream = session.accept() => {
                let stream = stream?;
                let kind = stream.header("streamtype").unwrap_or_default().to_string();
                streams.insert(kind, stream);
            }
            _ = &mut deadline => {
                tracing::info!(?wanted, got = ?streams.keys().collect::<Vec<_>>(), "timed out waiting for the client's streams");
                return None;
            }
        }
    }
    Some(streams)
}

/// Resolves once the SPDY client has gone: the connection ended or the
/// error stream (which carries the outcome) was reset. Streams opened late
/// (e.g. `resize` with a TTY) are accepted and ignored.
async fn client_gone(session: &mut Session, error: &Stream) {
    loop {
        tokio::select! {
            stream = session.accept() => match stream {
                Some(late) => tracing::trace!(kind = ?late.header("streamtype"), "ignoring a stream opened after the session started"),
                None => return,
            },
            _ = error.writer.closed() => return,
        }
    }
}

/// An output pipe writing to an SPDY stream (the session ends the stream).
fn spdy_output(stream: &Stream) -> (crate::runtime::OutputSink, JoinHandle<()>) {
    let writer = stream.writer.clone();
    output_pipe(move |bytes| {
        let writer = writer.clone();
        async move { writer.write(&bytes).await.is_ok() }
    })
}

async fn spdy_session(io: TokioIo<Upgraded>, version: Version, job: Job, opts: ExecOptions) {
    let mut session = Session::start(io);
    let Some(mut streams) = expected_streams(&mut session, &opts).await else {
        session.close().await;
        return;
    };
    let Some(error) = streams.remove("error") else {
        return session.close().await;
    };
    let mut pumps = Vec::new();
    let mut stdio = Stdio::default();
    let mut stdin_pump = None;
    if let Some(stdin) = streams.remove("stdin") {
        let (source, task) = input_pipe(stdin.data);
        stdio.stdin = Some(source);
        stdin_pump = Some(task);
    }
    let stdout = streams.remove("stdout");
    let stderr = streams.remove("stderr");
    if let Some(s) = &stdout {
        let (sink, task) = spdy_output(s);
        stdio.stdout = Some(sink);
        pumps.push(task);
    }
    let stderr_target = match opts.stderr_to() {
        StderrTo::Stderr => stderr.as_ref(),
        StderrTo::Stdout => stdout.as_ref(),
        StderrTo::Nowhere => None,
    };
    if let Some(s) = stderr_target {
        let (sink, task) = spdy_output(s);
        stdio.stderr = Some(sink);
        pumps.push(task);
    }

    let outcome = tokio::select! {
        outcome = job.run(stdio) => outcome,
        _ = client_gone(&mut session, &error) => {
            abandon(pumps, stdin_pump);
            return session.close().await;
        }
    };
    finish_pumps(pumps, stdin_pump).await;
    for s in stdout.iter().chain(stderr.iter()) {
        let _ = s.writer.close().await;
    }
    if let Some(status) = outcome.encode(version) {
        let _ = error.writer.write(&status).await;
    }
    log_outcome(&outcome);
    let _ = error.writer.close().await;
    session.close().await;
}
