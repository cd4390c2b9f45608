//! One SPDY/3.1 server session over an upgraded connection (or a byte
//! tunnel inside a WebSocket): a reader task that turns frames into
//! [`Stream`]s the handler accepts, answers PINGs and replies to each
//! SYN_STREAM, and a writer task that owns the outgoing compression context.
//!
//! Flow control is not enforced in either direction: the Kubernetes clients
//! (Go's spdystream) neither send nor honour WINDOW_UPDATE, so the session
//! ignores them and relies on TCP's own back-pressure.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::frame::{self, FLAG_FIN, Frame};
use super::zlib::{Deflater, Inflater};

/// The largest DATA payload the node sends in one frame.
const DATA_CHUNK: usize = 32 * 1024;
/// How long a closing session waits for the peer to hang up.
const LINGER: Duration = Duration::from_secs(5);

/// A stream the peer opened.
pub struct Stream {
    pub id: u32,
    /// Header names are lowercase (`streamtype`, `port`, `requestid`).
    pub headers: Vec<(String, String)>,
    /// What the peer sends; ends at its FIN, its RST_STREAM or the end of the session.
    pub data: mpsc::Receiver<Bytes>,
    pub writer: StreamWriter,
}

impl Stream {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The node's side of one stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Outgoing>,
    reset: CancellationToken,
}

impl StreamWriter {
    /// Sends bytes on the stream.
    pub async fn write(&self, data: &[u8]) -> io::Result<()> {
        for chunk in data.chunks(DATA_CHUNK) {
            self.frame(Frame::Data {
                stream_id: self.id,
                flags: 0,
                data: Bytes::copy_from_slice(chunk),
            })
            .await?;
        }
        Ok(())
    }

    /// Ends the node's side of the stream (DATA with FIN).
    pub async fn close(&self) -> io::Result<()> {
        self.frame(Frame::Data {
            stream_id: self.id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        })
        .await
    }

    /// Aborts the stream (RST_STREAM).
    pub async fn reset(&self, status: u32) {
        self.reset.cancel();
        let _ = self
            .out
            .send(Outgoing::Frame(Frame::RstStream {
                stream_id: self.id,
                status,
            }))
            .await;
    }

    /// Resolves once the stream is reset (by either side) or the session has ended.
    pub async fn closed(&self) {
        tokio::select! {
            _ = self.reset.cancelled() => {}
            _ = self.out.closed() => {}
        }
    }

    async fn frame(&self, frame: Frame) -> io::Result<()> {
        if self.reset.is_cancelled() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "stream was reset",
            ));
        }
        self.out
            .send(Outgoing::Frame(frame))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "session closed"))
    }
}

enum Outgoing {
    Frame(Frame),
    /// A SYN_REPLY; its header block is compressed in wire order by the writer.
    Reply {
        stream_id: u32,
        headers: Vec<(String, String)>,
    },
    /// GOAWAY, then end the node's half of the connection.
    Close {
        last_good_stream_id: u32,
    },
}

/// A running session: accept streams, then close.
pub struct Session {
    incoming: mpsc::Receiver<Stream>,
    out: mpsc::Sender<Outgoing>,
    reader: JoinHandle<u32>,
    writer: JoinHandle<()>,
}

impl Session {
    /// Starts serving SPDY on `io`.
    pub fn start<T>(io: T) -> Session
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let (out, out_rx) = mpsc::channel(64);
        let (incoming_tx, incoming) = mpsc::channel(16);
        let writer = tokio::spawn(write_loop(write, out_rx));
        let reader = tokio::spawn(read_loop(read, out.clone(), incoming_tx));
        Session {
            incoming,
            out,
            reader,
            writer,
        }
    }

    /// The next stream the peer opens; `None` once the peer has gone.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.incoming.recv().await
    }

    /// Sends GOAWAY, ends the node's half and waits (briefly) for the peer to hang up.
    pub async fn close(self) {
        let Session {
            incoming,
            out,
            mut reader,
            writer,
        } = self;
        drop(incoming);
        let _ = out
            .send(Outgoing::Close {
                last_good_stream_id: 0,
            })
            .await;
        drop(out);
        let _ = writer.await;
        if tokio::time::timeout(LINGER, &mut reader).await.is_err() {
            reader.abort();
        }
    }
}

async fn write_loop<W: AsyncWrite + Send + Unpin>(mut write: W, mut rx: mpsc::Receiver<Outgoing>) {
    let mut deflater = Deflater::new();
    let mut buf = BytesMut::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut closing = false;
        // Batch what is queued into one write.
        while let Some(item) = next.take() {
            match item {
                Outgoing::Frame(f) => f.encode(&mut buf),
                Outgoing::Reply { stream_id, headers } => {
                    let block = deflater.compress(&frame::encode_headers(&headers));
                    Frame::SynReply {
                        stream_id,
                        flags: 0,
                        headers: block.into(),
                    }
                    .encode(&mut buf);
                }
                Outgoing::Close {
                    last_good_stream_id,
                } => {
                    Frame::GoAway {
                        last_good_stream_id,
                        status: 0,
                    }
                    .encode(&mut buf);
                    closing = true;
                    break;
                }
            }
            if buf.len() < 64 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if let Err(e) = write.write_all(&buf).await {
            tracing::debug!(error = %e, "SPDY connection write failed");
            return;
        }
        buf.clear();
        if write.flush().await.is_err() {
            return;
        }
        if closing {
            let _ = write.shutdown().await;
            return;
        }
    }
    let _ = write.shutdown().await;
}

/// Reads frames until the peer hangs up; returns the last stream id it opened.
async fn read_loop<R: AsyncRead + Send + Unpin>(
    mut read: R,
    out: mpsc::Sender<Outgoing>,
    incoming: mpsc::Sender<Stream>,
) -> u32 {
    let mut inflater = Inflater::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut streams: HashMap<u32, (mpsc::Sender<Bytes>, CancellationToken)> = HashMap::new();
    let mut last_id = 0;
    loop {
        let frame = match frame::Frame::decode(&mut buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => match read.read_buf(&mut buf).await {
                Ok(0) => {
                    tracing::trace!(last_id, "SPDY peer closed the connection");
                    break;
                }
                Ok(_) => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY connection read failed");
                    break;
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "SPDY protocol error; ending the session");
                let _ = out
                    .send(Outgoing::Frame(Frame::GoAway {
                        last_good_stream_id: last_id,
                        status: 1,
                    }))
                    .await;
                break;
            }
        };
        tracing::trace!(?frame, "SPDY frame in");
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                let headers = match inflater
                    .decompress(&headers)
                    .map_err(|e| e.to_string())
                    .and_then(|b| frame::decode_headers(&b).map_err(|e| e.to_string()))
                {
                    Ok(h) => h,
                    Err(e) => {
                        // The compression context is lost with it: the session cannot go on.
                        tracing::debug!(error = %e, "bad SYN_STREAM header block; ending the session");
                        let _ = out
                            .send(Outgoing::Frame(Frame::GoAway {
                                last_good_stream_id: last_id,
                                status: 1,
                            }))
                            .await;
                        break;
                    }
                };
                if streams.contains_key(&stream_id) {
                    let _ = out
                        .send(Outgoing::Frame(Frame::RstStream {
                            stream_id,
                            status: frame::PROTOCOL_ERROR,
                        }))
                        .await;
                    continue;
                }
                last_id = last_id.max(stream_id);
                let (tx, rx) = mpsc::channel(32);
                let reset = CancellationToken::new();
                if flags & FLAG_FIN == 0 {
                    streams.insert(stream_id, (tx, reset.clone()));
                }
                if out
                    .send(Outgoing::Reply {
                        stream_id,
                        headers: Vec::new(),
                    })
                    .await
                    .is_err()
                {
                    break;
                }
                let stream = Stream {
                    id: stream_id,
                    headers,
                    data: rx,
                    writer: StreamWriter {
                        id: stream_id,
                        out: out.clone(),
                        reset,
                    },
                };
                if let Err(mpsc::error::SendError(stream)) = incoming.send(stream).await {
                    stream.writer.reset(frame::REFUSED_STREAM).await;
                    streams.remove(&stream_id);
                }
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let Some((tx, _)) = streams.get(&stream_id) else {
                    tracing::trace!(stream_id, "DATA for an unknown or finished stream");
                    continue;
                };
                if !data.is_empty() && tx.send(data).await.is_err() {
                    // Nobody reads this stream any more: drop what comes.
                    tracing::trace!(stream_id, "discarding data for a stream nobody reads");
                }
                if flags & FLAG_FIN != 0 {
                    streams.remove(&stream_id);
                }
            }
            Frame::RstStream { stream_id, status } => {
                tracing::debug!(stream_id, status, "peer reset a stream");
                if let Some((_, reset)) = streams.remove(&stream_id) {
                    reset.cancel();
                }
            }
            Frame::Ping { id } => {
                if out.send(Outgoing::Frame(Frame::Ping { id })).await.is_err() {
                    break;
                }
            }
            Frame::GoAway { .. } => tracing::debug!("peer sent GOAWAY"),
            Frame::Settings { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Headers { .. }
            | Frame::SynReply { .. }
            | Frame::Other { .. } => {}
        }
    }
    last_id
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's side of a session, for tests: frames in, frames out.
    struct Client {
        io: tokio::io::DuplexStream,
        deflater: Deflater,
        inflater: Inflater,
        buf: BytesMut,
    }

    impl Client {
        async fn send(&mut self, frame: Frame) {
            let mut buf = BytesMut::new();
            frame.encode(&mut buf);
            self.io.write_all(&buf).await.unwrap();
        }

        async fn open(&mut self, id: u32, headers: &[(&str, &str)]) {
            let pairs: Vec<(String, String)> = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let block = self.deflater.compress(&frame::encode_headers(&pairs));
            self.send(Frame::SynStream {
                stream_id: id,
                associated_id: 0,
                priority: 0,
                flags: 0,
                headers: block.into(),
            })
            .await;
        }

        async fn next(&mut self) -> Option<Frame> {
            loop {
                if let Some(f) = Frame::decode(&mut self.buf).unwrap() {
                    return Some(f);
                }
                if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                    return None;
                }
            }
        }
    }

    #[tokio::test]
    async fn streams_replies_pings_and_close() {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let mut session = Session::start(ours);
        let mut client = Client {
            io: theirs,
            deflater: Deflater::new(),
            inflater: Inflater::new(),
            buf: BytesMut::new(),
        };

        client.open(1, &[("streamtype", "stdin")]).await;
        client.open(3, &[("streamtype", "stdout")]).await;
        let mut stdin = session.accept().await.unwrap();
        let stdout = session.accept().await.unwrap();
        assert_eq!((stdin.id, stdin.header("streamtype")), (1, Some("stdin")));
        assert_eq!(stdout.header("streamtype"), Some("stdout"));
        for id in [1, 3] {
            match client.next().await.unwrap() {
                Frame::SynReply {
                    stream_id, headers, ..
                } => {
                    assert_eq!(stream_id, id);
                    assert_eq!(
                        frame::decode_headers(&client.inflater.decompress(&headers).unwrap())
                            .unwrap(),
                        vec![]
                    );
                }
                other => panic!("expected SYN_REPLY, got {other:?}"),
            }
        }

        client.send(Frame::Ping { id: 7 }).await;
        assert_eq!(client.next().await, Some(Frame::Ping { id: 7 }));

        client
            .send(Frame::Data {
                stream_id: 1,
                flags: 0,
                data: Bytes::from_static(b"hi"),
            })
            .await;
        client
            .send(Frame::Data {
                stream_id: 1,
                flags: FLAG_FIN,
                data: Bytes::new(),
            })
            .await;
        assert_eq!(stdin.data.recv().await.as_deref(), Some(&b"hi"[..]));
        assert_eq!(stdin.data.recv().await, None);

        stdout.writer.write(b"out").await.unwrap();
        stdout.writer.close().await.unwrap();
        assert_eq!(
            client.next().await,
            Some(Frame::Data {
                stream_id: 3,
                flags: 0,
                data: Bytes::from_static(b"out")
            })
        );
        assert_eq!(
            client.next().await,
            Some(Frame::Data {
                stream_id: 3,
                flags: FLAG_FIN,
                data: Bytes::new()
            })
        );

        let closing = tokio::spawn(session.close());
        assert!(matches!(client.next().await, Some(Frame::GoAway { .. })));
        assert_eq!(client.next().await, None);
        drop(client);
        closing.await.unwrap();
        assert!(stdout.writer.write(b"late").await.is_err());
    }

    #[tokio::test]
    async fn reset_streams_refuse_writes() {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let mut session = Session::start(ours);
        let mut client = Client {
            io: theirs,
            deflater: Deflater::new(),
            inflater: Inflater::new(),
            buf: BytesMut::new(),
        };
        client
            .open(1, &[("streamtype", "data"), ("port", "80")])
            .await;
        let mut stream = session.accept().await.unwrap();
        assert!(matches!(client.next().await, Some(Frame::SynReply { .. })));
        client
            .send(Frame::RstStream {
                stream_id: 1,
                status: 5,
            })
            .await;
        assert_eq!(stream.data.recv().await, None);
        assert!(stream.writer.write(b"x").await.is_err());
        drop(client);
        assert!(session.accept().await.is_none());
    }
}
