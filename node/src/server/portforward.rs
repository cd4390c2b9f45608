//! `/portForward/{ns}/{pod}`: `kubectl port-forward` to a pod's ports, each
//! forwarded connection a TCP connection to the host address the runtime
//! serves that containerPort on (`PodTable::port`). Three transports:
//! - SPDY inside WebSocket binary messages (`SPDY/3.1+portforward.k8s.io`,
//!   kubectl 1.31+), and plain SPDY (`X-Stream-Protocol-Version:
//!   portforward.k8s.io`): per connection the client opens an `error` and a
//!   `data` stream with the same `requestid` and the target `port`;
//! - WebSocket channels (`v4.channel.k8s.io`, kube-rs and the Python client):
//!   `?ports=a,b`, channel 2i carries port i's data and 2i+1 its errors, each
//!   starting with the port number (little-endian u16).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::spdy::{self, Session, Stream};
use super::stream_protocol::{
    CHUNK, PORT_FORWARD_PROTOCOL, PROTOCOL_HEADER, negotiate, offered, query_pairs, wants_upgrade,
};
use super::websocket::{self, channel_message};
use super::{find_pod, status_error};
use crate::pods::context::NodeContext;

/// The WebSocket subprotocol of SPDY tunnelled in WebSocket.
const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
/// WebSocket subprotocols of the channel protocol.
const CHANNEL_PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", "channel.k8s.io"];

/// Which pod a session forwards to.
#[derive(Clone)]
struct Target {
    ctx: Arc<NodeContext>,
    namespace: String,
    pod: String,
    uid: String,
}

impl Target {
    /// The host address serving `port` of the pod now.
    fn address(&self, port: u16) -> Result<SocketAddr, String> {
        let view = self
            .ctx
            .table
            .get(&self.namespace, &self.pod)
            .ok_or_else(|| "pod is no longer on this node".to_string())?;
        let ip = view
            .pod_ip
            .ok_or_else(|| "pod has no IP address yet".to_string())?;
        self.ctx
            .table
            .port(ip, port)
            .ok_or_else(|| format!("no container is serving port {port}"))
    }

    fn error(&self, port: u16, why: &str) -> String {
        format!(
            "error forwarding port {port} to pod {}, uid {}: {why}",
            self.pod, self.uid
        )
    }

    async fn connect(&self, port: u16) -> Result<TcpStream, String> {
        let addr = self.address(port).map_err(|e| self.error(port, &e))?;
        TcpStream::connect(addr)
            .await
            .map_err(|e| self.error(port, &format!("dial tcp {addr}: {e}")))
    }
}

pub async fn port_forward(
    State(ctx): State<Arc<NodeContext>>,
    Path((ns, pod)): Path<(String, String)>,
    request: Request,
) -> Response {
    let view = match find_pod(&ctx, &ns, &pod) {
        Ok(view) => view,
        Err(response) => return response,
    };
    let target = Target {
        ctx,
        namespace: ns.clone(),
        pod: pod.clone(),
        uid: view.uid.clone(),
    };
    let span = tracing::info_span!("port_forward", pod = %format!("{ns}/{pod}"));
    let headers = request.headers();
    if wants_upgrade(headers, "websocket") {
        let ports = match channel_ports(request.uri().query()) {
            Ok(ports) => ports,
            Err(message) => return status_error(StatusCode::BAD_REQUEST, message),
        };
        let (mut parts, _) = request.into_parts();
        let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => ws,
            Err(rejection) => return rejection.into_response(),
        };
        if ws
            .requested_protocols()
            .any(|p| p.as_bytes() == SPDY_TUNNEL.as_bytes())
        {
            return ws.protocols([SPDY_TUNNEL]).on_upgrade(move |socket| {
                tracing::Instrument::instrument(
                    spdy_session(websocket::tunnel(socket), target),
                    span,
                )
            });
        }
        if ports.is_empty() {
            return status_error(
                StatusCode::BAD_REQUEST,
                "query parameter \"ports\" is required",
            );
        }
        return ws.protocols(CHANNEL_PROTOCOLS).on_upgrade(move |socket| {
            tracing::Instrument::instrument(channel_session(socket, target, ports), span)
        });
    }
    if wants_upgrade(headers, spdy::UPGRADE) {
        let offers = offered(headers, PROTOCOL_HEADER);
        let protocol = negotiate(&offers, &[PORT_FORWARD_PROTOCOL]);
        if protocol.is_none() && !offers.is_empty() {
            return status_error(
                StatusCode::FORBIDDEN,
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offers:?}, server supports [\"{PORT_FORWARD_PROTOCOL}\"]"
                ),
            );
        }
        let mut request = request;
        return spdy::upgrade(&mut request, protocol, move |io| {
            tracing::Instrument::instrument(spdy_session(io, target), span)
        });
    }
    status_error(StatusCode::BAD_REQUEST, "Upgrade request required")
}

/// `ports=8080,9090` (or repeated `ports`) as numbers.
fn channel_ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (_, value) in query_pairs(query).into_iter().filter(|(k, _)| k == "ports") {
        for p in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => ports.push(n),
                _ => return Err(format!("unable to parse \"{p}\" as a port")),
            }
        }
    }
    if ports.len() > 127 {
        return Err("at most 127 ports can be forwarded on one connection".into());
    }
    Ok(ports)
}

/// One connection's two streams as they arrive.
#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
}

async fn spdy_session<T>(io: T, target: Target)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut session = Session::start(io);
    let mut pending: HashMap<String, Pair> = HashMap::new();
    while let Some(stream) = session.accept().await {
        let kind = stream.header("streamtype").unwrap_or_default().to_string();
        // Clients before requestid paired the data stream with the error stream two ids before it.
        let request_id = match stream.header("requestid") {
            Some(id) => id.to_string(),
            None if kind == "data" => stream.id.saturating_sub(2).to_string(),
            None => stream.id.to_string(),
        };
        let pair = pending.entry(request_id.clone()).or_default();
        match kind.as_str() {
            "error" => pair.error = Some(stream),
            "data" => pair.data = Some(stream),
            other => {
                tracing::debug!(streamtype = other, "unexpected stream type; resetting it");
                stream.writer.reset(spdy::frame::INVALID_STREAM).await;
                continue;
            }
        }
        if pair.error.is_some()
            && pair.data.is_some()
            && let Some(Pair {
                error: Some(error),
                data: Some(data),
            }) = pending.remove(&request_id)
        {
            tokio::spawn(forward_pair(target.clone(), error, data));
        }
    }
    session.close().await;
}

async fn forward_pair(target: Target, error: Stream, data: Stream) {
    let port = data
        .header("port")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p > 0);
    let result = match port {
        None => Err(format!(
            "invalid port header {:?}",
            data.header("port").unwrap_or("")
        )),
        Some(port) => match target.connect(port).await {
            Ok(tcp) => {
                tracing::debug!(port, "forwarding a connection");
                forward_spdy(tcp, data.data, &data.writer).await;
                Ok(())
            }
            Err(e) => Err(e),
        },
    };
    if let Err(message) = result {
        tracing::info!(%message, "port-forward failed");
        let _ = error.writer.write(message.as_bytes()).await;
    }
    let _ = data.writer.close().await;
    let _ = error.writer.close().await;
}

/// Copies both ways until the pod ends its side, the client resets the stream or the session ends.
async fn forward_spdy(
    tcp: TcpStream,
    mut from_client: mpsc::Receiver<Bytes>,
    to_client: &spdy::StreamWriter,
) {
    let (mut pod_read, mut pod_write) = tcp.into_split();
    let mut upstream = tokio::spawn(async move {
        while let Some(bytes) = from_client.recv().await {
            if pod_write.write_all(&bytes).await.is_err() {
                return;
            }
        }
        // The client is done sending: pass the half-close on.
        let _ = pod_write.shutdown().await;
    });
    let downstream = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match pod_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if to_client.write(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = downstream => {}
        _ = to_client.closed() => {}
    }
    if !upstream.is_finished() {
        upstream.abort();
    }
    let _ = (&mut upstream).await;
}

async fn channel_session(socket: WebSocket, target: Target, ports: Vec<u16>) {
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel::<Message>(32);
    let writer = websocket::spawn_writer(sink, rx);
    let mut to_pods = Vec::new();
    let mut connections = JoinSet::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let data = (2 * i) as u8;
        let _ = tx.send(channel_message(data, &port.to_le_bytes())).await;
        let _ = tx
            .send(channel_message(data + 1, &port.to_le_bytes()))
            .await;
        let (to_pod, from_client) = mpsc::channel::<Bytes>(16);
        to_pods.push(Some(to_pod));
        connections.spawn(forward_channel(
            target.clone(),
            port,
            data,
            from_client,
            tx.clone(),
        ));
    }
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    let Some((channel, payload)) = websocket::split_channel(&bytes) else { continue };
                    let index = (channel / 2) as usize;
                    if channel % 2 == 0
                        && let Some(slot) = to_pods.get_mut(index)
                        && let Some(to_pod) = slot
                        && to_pod.send(payload).await.is_err()
                    {
                        *slot = None;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            done = connections.join_next() => if done.is_none() { break },
        }
    }
    drop(to_pods);
    connections.abort_all();
    drop(tx);
    let _ = writer.await;
}

/// One port of a channel session: a single connection to the pod.
async fn forward_channel(
    target: Target,
    port: u16,
    channel: u8,
    mut from_client: mpsc::Receiver<Bytes>,
    tx: mpsc::Sender<Message>,
) {
    let tcp = match target.connect(port).await {
        Ok(tcp) => tcp,
        Err(message) => {
            tracing::info!(%message, "port-forward failed");
            let _ = tx
                .send(channel_message(channel + 1, message.as_bytes()))
                .await;
            return;
        }
    };
    let (mut pod_read, mut pod_write) = tcp.into_split();
    let upstream = tokio::spawn(async move {
        while let Some(bytes) = from_client.recv().await {
            if pod_write.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = pod_write.shutdown().await;
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        match pod_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send(channel_message(channel, &buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    }
    upstream.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_channel_ports() {
        assert_eq!(
            channel_ports(Some("ports=8080,9090&ports=81")).unwrap(),
            [8080, 9090, 81]
        );
        assert_eq!(
            channel_ports(Some("ports=8080%2C9090")).unwrap(),
            [8080, 9090]
        );
        assert_eq!(channel_ports(None).unwrap(), Vec::<u16>::new());
        assert!(channel_ports(Some("ports=http")).is_err());
        assert!(channel_ports(Some("ports=0")).is_err());
    }
}
