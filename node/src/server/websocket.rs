//! WebSocket plumbing for the streaming endpoints: the `*.channel.k8s.io`
//! framing (each binary message starts with its channel byte), the writer
//! task that owns a socket's sending half, and a byte tunnel for protocols
//! carried inside binary messages (`SPDY/3.1+portforward.k8s.io`).

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::{Bytes, BytesMut};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Channel numbers of the remote-command protocols.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5: "the sender is done with the channel named in the next byte".
pub const CLOSE: u8 = 255;

/// One message on `channel`.
pub fn channel_message(channel: u8, data: &[u8]) -> Message {
    let mut buf = BytesMut::with_capacity(data.len() + 1);
    buf.extend_from_slice(&[channel]);
    buf.extend_from_slice(data);
    Message::Binary(buf.freeze())
}

/// A binary message's channel and payload (`None` for an empty message).
pub fn split_channel(message: &Bytes) -> Option<(u8, Bytes)> {
    let (&channel, _) = message.split_first()?;
    Some((channel, message.slice(1..)))
}

/// Sends what `rx` yields on `sink`, then a normal close once every sender is gone.
pub fn spawn_writer(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Message>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if let Err(e) = sink.send(message).await {
                tracing::debug!(error = %e, "websocket send failed");
                return;
            }
        }
        let close = CloseFrame {
            code: axum::extract::ws::close_code::NORMAL,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(close))).await;
        let _ = sink.close().await;
    })
}

/// A byte stream carried in the socket's binary messages, one write per message.
pub fn tunnel(socket: WebSocket) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut from_peer, mut to_peer) = tokio::io::split(theirs);
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(32);
    let writer = spawn_writer(sink, rx);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_peer.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        drop(tx);
        let _ = writer.await;
    });
    tokio::spawn(async move {
        while let Some(message) = stream.next().await {
            let message = match message {
                Ok(message) => message,
                Err(e) => {
                    tracing::debug!(error = %e, "websocket tunnel read failed");
                    break;
                }
            };
            match message {
                Message::Binary(bytes) => {
                    if to_peer.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Message::Close(_) => break,
                Message::Text(_) => {
                    tracing::debug!("text message in a binary tunnel; closing it");
                    break;
                }
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
        tracing::trace!("websocket tunnel: the peer is done sending");
        let _ = to_peer.shutdown().await;
    });
    ours
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_prefixing() {
        let Message::Binary(bytes) = channel_message(STDERR, b"oops") else {
            panic!("binary expected")
        };
        assert_eq!(&bytes[..], b"\x02oops");
        assert_eq!(
            split_channel(&bytes),
            Some((STDERR, Bytes::from_static(b"oops")))
        );
        let Message::Binary(empty) = channel_message(STDOUT, b"") else {
            panic!("binary expected")
        };
        assert_eq!(split_channel(&empty), Some((STDOUT, Bytes::new())));
        assert_eq!(split_channel(&Bytes::new()), None);
        assert_eq!(
            split_channel(&Bytes::from_static(&[CLOSE, STDIN])),
            Some((CLOSE, Bytes::from_static(&[STDIN])))
        );
    }
}
