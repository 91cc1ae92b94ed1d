//! Makes the socket speak to every gRPC client: several (Python's grpcio, grpc-java, Swift)
//! send the socket's path as the HTTP/2 `:authority` of calls over a Unix socket, which h2,
//! under tonic, refuses as malformed with `RST_STREAM(PROTOCOL_ERROR)` before any service sees
//! the call. Each connection's client-to-daemon bytes pass through here: header blocks are
//! decoded (HPACK, with the client's compression state), an `:authority` that is not a valid
//! URI authority becomes `localhost` (what grpc-go and tonic's own client send over a Unix
//! socket), and the block is encoded again for the daemon's side. Every other frame, and all
//! daemon-to-client bytes, pass unchanged.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::{Connected, UdsConnectInfo};

/// What every HTTP/2 connection starts with.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Largest frame read from a client: the daemon's HTTP/2 server advertises HTTP/2's default
/// `SETTINGS_MAX_FRAME_SIZE`, so a client that sends more is cut off (h2 would refuse the
/// frame too).
const MAX_FRAME_BYTES: usize = 16_384;

/// Largest header block (a HEADERS frame and its CONTINUATIONs) gathered before it is
/// rewritten: far above any gRPC call's metadata, and bounded so that a client cannot make
/// the daemon buffer without end.
pub const MAX_HEADER_BLOCK_BYTES: usize = 256 * 1024;

/// Largest header list a block may decode to (names, values and HPACK's 32 bytes per field):
/// an index of one byte may stand for a 4 KB table entry, so the compressed size alone bounds
/// nothing.
pub const MAX_HEADER_LIST_BYTES: usize = 1024 * 1024;

/// HPACK's default dynamic table size, the only one the daemon's HTTP/2 server advertises.
const HPACK_TABLE_BYTES: usize = 4096;

/// Frames written towards the daemon are at most this long: the smallest maximum frame size
/// HTTP/2 allows, which every peer accepts.
const OUT_FRAME_BYTES: usize = 16_384;

/// Bytes buffered between the two halves of a connection.
const PIPE_BYTES: usize = 64 * 1024;

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// A client's connection as the gRPC server reads it: the rewritten stream, with the peer's
/// credentials of the socket it came in on (for the audit log's "who").
pub struct Rewritten {
    pipe: DuplexStream,
    info: UdsConnectInfo,
}

/// Starts rewriting `stream`'s header blocks; the returned stream is what the server reads.
pub fn rewrite(stream: UnixStream) -> Rewritten {
    let info = UdsConnectInfo {
        peer_addr: stream.peer_addr().ok().map(Arc::new),
        peer_cred: stream.peer_cred().ok(),
    };
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    let (from_client, mut to_client) = stream.into_split();
    let (mut from_server, mut to_server) = tokio::io::split(ours);
    let backwards = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
        let _ = to_client.shutdown().await;
    });
    tokio::spawn(async move {
        let forwarded = forward(from_client, &mut to_server).await;
        // However forwarding ended, the server sees the end of the client's bytes (a dropped
        // half of a split stream does not close it), so that the connection closes and a
        // stopping daemon does not wait for it.
        let _ = to_server.shutdown().await;
        if let Err(err) = forwarded {
            tracing::debug!(error = %err, "a client connection ended");
            // A broken client stream is not resumed: the client is told at once.
            backwards.abort();
        }
    });
    Rewritten { pipe: theirs, info }
}

/// Copies client bytes to the server, header blocks rewritten.
async fn forward(
    mut client: impl AsyncRead + Unpin,
    server: &mut (impl AsyncWrite + Unpin),
) -> std::io::Result<()> {
    let mut preface = [0u8; PREFACE.len()];
    client.read_exact(&mut preface).await?;
    server.write_all(&preface).await?;
    if preface != PREFACE {
        // Not HTTP/2 with prior knowledge: h2 refuses it; pass it on to be refused.
        return tokio::io::copy(&mut client, server).await.map(drop);
    }
    let mut rewriter = Rewriter::default();
    loop {
        let mut head = [0u8; 9];
        match client.read_exact(&mut head).await {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(err) => return Err(err),
        }
        let length = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        if length > MAX_FRAME_BYTES {
            return Err(invalid("a frame larger than HTTP/2 allows"));
        }
        let mut payload = vec![0u8; length];
        client.read_exact(&mut payload).await?;
        let frame = Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5] & 0x7f, head[6], head[7], head[8]]),
            payload,
        };
        for bytes in rewriter.frame(frame)? {
            server.write_all(&bytes).await?;
        }
        server.flush().await?;
    }
    Ok(())
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// One connection's header-block state: the client's compression context, ours towards the
/// server, and a block being gathered across CONTINUATION frames. Both contexts use HPACK's
/// default table size of 4,096 bytes, which is what the daemon's HTTP/2 server advertises (it
/// sets no other): the client's encoder may not grow its table past it (a size update that
/// asks for more is refused here, as h2 would), and ours stays within it.
struct Rewriter {
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
    pending: Option<Pending>,
}

impl Default for Rewriter {
    fn default() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HPACK_TABLE_BYTES);
        Self {
            decoder,
            encoder: loona_hpack::Encoder::new(),
            pending: None,
        }
    }
}

/// A HEADERS frame whose block continues in CONTINUATION frames.
struct Pending {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

impl Rewriter {
    /// The bytes to send on for one frame from the client: itself, nothing yet (a block
    /// continues), or a whole rewritten block.
    fn frame(&mut self, frame: Frame) -> std::io::Result<Vec<Vec<u8>>> {
        match (frame.kind, &mut self.pending) {
            (HEADERS, None) => {
                let (priority, fragment) = headers_fragment(frame.flags, &frame.payload)?;
                if fragment.len() > MAX_HEADER_BLOCK_BYTES {
                    return Err(invalid("a header block larger than the daemon reads"));
                }
                let pending = Pending {
                    stream: frame.stream,
                    end_stream: frame.flags & END_STREAM != 0,
                    priority,
                    block: fragment.to_vec(),
                };
                self.gathered(pending, frame.flags)
            }
            (CONTINUATION, Some(pending)) if pending.stream == frame.stream => {
                if pending.block.len() + frame.payload.len() > MAX_HEADER_BLOCK_BYTES {
                    return Err(invalid("a header block larger than the daemon reads"));
                }
                pending.block.extend_from_slice(&frame.payload);
                let pending = self.pending.take().ok_or_else(|| invalid("no block"))?;
                self.gathered(pending, frame.flags)
            }
            // HTTP/2 allows nothing between a HEADERS frame and its CONTINUATIONs.
            (_, Some(_)) => Err(invalid("a frame inside a header block")),
            _ => Ok(vec![encode_frame(
                frame.kind,
                frame.flags,
                frame.stream,
                &frame.payload,
            )]),
        }
    }

    fn gathered(&mut self, pending: Pending, flags: u8) -> std::io::Result<Vec<Vec<u8>>> {
        if flags & END_HEADERS == 0 {
            self.pending = Some(pending);
            return Ok(Vec::new());
        }
        let mut headers = Vec::new();
        let mut list_bytes = 0usize;
        self.decoder
            .decode_with_cb(&pending.block, |name, value| {
                list_bytes = list_bytes.saturating_add(name.len() + value.len() + 32);
                // Past the limit nothing more is copied; the block is refused below.
                if list_bytes <= MAX_HEADER_LIST_BYTES {
                    headers.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|err| invalid(&format!("a header block that does not decode: {err}")))?;
        if list_bytes > MAX_HEADER_LIST_BYTES {
            return Err(invalid("a header list larger than the daemon reads"));
        }
        for (name, value) in &mut headers {
            if name.as_slice() == b":authority"
                && http::uri::Authority::try_from(value.as_slice()).is_err()
            {
                *value = b"localhost".to_vec();
            }
        }
        let block = self
            .encoder
            .encode(headers.iter().map(|(name, value)| (&name[..], &value[..])));
        Ok(block_frames(&pending, &block))
    }
}

/// A HEADERS payload's header block fragment, without padding, and its priority fields.
fn headers_fragment(flags: u8, payload: &[u8]) -> std::io::Result<(Option<[u8; 5]>, &[u8])> {
    let mut rest = payload;
    let mut padding = 0;
    if flags & PADDED != 0 {
        let (&length, tail) = rest.split_first().ok_or_else(|| invalid("no pad length"))?;
        padding = usize::from(length);
        rest = tail;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let (fields, tail) = rest
            .split_first_chunk::<5>()
            .ok_or_else(|| invalid("no priority fields"))?;
        priority = Some(*fields);
        rest = tail;
    }
    let end = rest
        .len()
        .checked_sub(padding)
        .ok_or_else(|| invalid("more padding than payload"))?;
    Ok((priority, &rest[..end]))
}

/// A rewritten block as a HEADERS frame and as many CONTINUATION frames as it needs.
fn block_frames(pending: &Pending, block: &[u8]) -> Vec<Vec<u8>> {
    let mut first = Vec::new();
    let mut flags = 0;
    if pending.end_stream {
        flags |= END_STREAM;
    }
    if let Some(priority) = pending.priority {
        flags |= PRIORITY;
        first.extend_from_slice(&priority);
    }
    let room = OUT_FRAME_BYTES - first.len();
    let (head, mut rest) = block.split_at(block.len().min(room));
    first.extend_from_slice(head);
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    let mut frames = vec![encode_frame(HEADERS, flags, pending.stream, &first)];
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(OUT_FRAME_BYTES));
        rest = tail;
        let flags = if rest.is_empty() { END_HEADERS } else { 0 };
        frames.push(encode_frame(CONTINUATION, flags, pending.stream, chunk));
    }
    frames
}

fn encode_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = payload.len().to_be_bytes();
    let mut frame = Vec::with_capacity(9 + payload.len());
    // Lengths here are below 2^24: read frames are bounded by MAX_FRAME_BYTES, written ones
    // by OUT_FRAME_BYTES.
    frame.extend_from_slice(&length[length.len() - 3..]);
    frame.push(kind);
    frame.push(flags);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned())
}

impl Connected for Rewritten {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Rewritten {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.pipe).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewritten {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.pipe).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn headers_frame(stream: u32, flags: u8, block: &[u8]) -> Frame {
        Frame {
            kind: HEADERS,
            flags,
            stream,
            payload: block.to_vec(),
        }
    }

    /// The headers a daemon-side decoder reads from the frames sent on.
    fn decoded(
        decoder: &mut loona_hpack::Decoder<'_>,
        frames: &[Vec<u8>],
    ) -> Vec<(String, String)> {
        let mut block = Vec::new();
        for frame in frames {
            assert!(matches!(frame[3], HEADERS | CONTINUATION));
            let (_, fragment) = headers_fragment(frame[4], &frame[9..]).unwrap();
            block.extend_from_slice(fragment);
        }
        decoder
            .decode(&block)
            .unwrap()
            .into_iter()
            .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    }

    #[test]
    fn a_socket_path_authority_becomes_localhost_and_the_rest_stays() {
        let mut client = loona_hpack::Encoder::new();
        let mut server = loona_hpack::Decoder::new();
        let mut rewriter = Rewriter::default();
        // Twice on one connection: the second block refers to the first one's table entries.
        for stream in [1, 3] {
            let block = client.encode([
                (&b":path"[..], &b"/runbook.v1.Runbook/Status"[..]),
                (b":authority", b"tmp%2Fgd%2Fs.sock"),
                (b"content-type", b"application/grpc"),
                (b"x-custom", b"kept"),
            ]);
            let frames = rewriter
                .frame(headers_frame(stream, END_HEADERS, &block))
                .unwrap();
            assert_eq!(frames.len(), 1);
            assert_eq!(
                u32::from_be_bytes(frames[0][5..9].try_into().unwrap()),
                stream
            );
            assert_eq!(
                decoded(&mut server, &frames),
                [
                    (":path".into(), "/runbook.v1.Runbook/Status".into()),
                    (":authority".into(), "localhost".into()),
                    ("content-type".into(), "application/grpc".into()),
                    ("x-custom".into(), "kept".into()),
                ]
            );
        }
    }

    #[test]
    fn a_valid_authority_and_other_frames_pass_unchanged() {
        let mut client = loona_hpack::Encoder::new();
        let mut server = loona_hpack::Decoder::new();
        let mut rewriter = Rewriter::default();
        let block = client.encode([(&b":authority"[..], &b"localhost:50051"[..])]);
        let frames = rewriter
            .frame(headers_frame(1, END_HEADERS | END_STREAM, &block))
            .unwrap();
        assert_eq!(frames[0][4], END_HEADERS | END_STREAM);
        assert_eq!(
            decoded(&mut server, &frames),
            [(":authority".into(), "localhost:50051".into())]
        );
        let data = Frame {
            kind: 0x0,
            flags: END_STREAM,
            stream: 1,
            payload: b"\0\0\0\0\x02hi".to_vec(),
        };
        assert_eq!(
            rewriter.frame(data).unwrap(),
            [encode_frame(0x0, END_STREAM, 1, b"\0\0\0\0\x02hi")]
        );
    }

    #[test]
    fn a_block_split_over_continuations_with_padding_is_gathered_and_split_again() {
        let mut client = loona_hpack::Encoder::new();
        let mut server = loona_hpack::Decoder::new();
        let mut rewriter = Rewriter::default();
        let big = "v".repeat(40_000);
        let block = client.encode([
            (
                &b":authority"[..],
                &b"/run/user/1000/runbook/runbookd.sock"[..],
            ),
            (b"x-big", big.as_bytes()),
        ]);
        let (first, rest) = block.split_at(100);
        let mut padded = vec![3u8];
        padded.extend_from_slice(first);
        padded.extend_from_slice(&[0, 0, 0]);
        assert!(
            rewriter
                .frame(headers_frame(5, PADDED, &padded))
                .unwrap()
                .is_empty()
        );
        let frames = rewriter
            .frame(Frame {
                kind: CONTINUATION,
                flags: END_HEADERS,
                stream: 5,
                payload: rest.to_vec(),
            })
            .unwrap();
        assert_eq!(frames.len(), 3, "40 KB in frames of 16 KiB");
        assert!(
            frames
                .iter()
                .all(|frame| frame.len() <= 9 + OUT_FRAME_BYTES)
        );
        assert_eq!(frames[2][4], END_HEADERS);
        let headers = decoded(&mut server, &frames);
        assert_eq!(headers[0], (":authority".into(), "localhost".into()));
        assert_eq!(headers[1].1.len(), 40_000);
    }

    #[test]
    fn a_small_block_that_decodes_to_a_huge_list_is_refused() {
        let mut client = loona_hpack::Encoder::new();
        let mut rewriter = Rewriter::default();
        let big = "v".repeat(4000);
        let first = client.encode([(&b"x-big"[..], big.as_bytes())]);
        rewriter
            .frame(headers_frame(1, END_HEADERS, &first))
            .unwrap();
        // Each further mention of the entry is one byte: 300 of them decode to 1.2 MB.
        let again = client.encode(vec![(&b"x-big"[..], big.as_bytes()); 300]);
        assert!(again.len() < 400, "{}", again.len());
        let err = rewriter
            .frame(headers_frame(3, END_HEADERS, &again))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "a header list larger than the daemon reads"
        );
    }

    #[test]
    fn a_table_larger_than_the_server_allows_is_refused() {
        let mut rewriter = Rewriter::default();
        // A dynamic table size update (001xxxxx) to 65,536 bytes.
        let mut update = Vec::new();
        loona_hpack::encoder::encode_integer_into(65_536, 5, 0x20, &mut update).unwrap();
        assert!(
            rewriter
                .frame(headers_frame(1, END_HEADERS, &update))
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_broken_client_stream_closes_both_sides() {
        let (mut client, daemon_side) = UnixStream::pair().unwrap();
        let mut server = rewrite(daemon_side);
        client.write_all(PREFACE).await.unwrap();
        // A HEADERS frame whose block does not decode.
        client
            .write_all(&encode_frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff]))
            .await
            .unwrap();
        let mut seen = Vec::new();
        server.read_to_end(&mut seen).await.unwrap();
        assert_eq!(seen, PREFACE, "the server sees the preface, then the end");
        let mut rest = Vec::new();
        // The client is not left waiting: its stream ends (or is reset) too.
        let _ = client.read_to_end(&mut rest).await;
        assert!(rest.is_empty());
    }

    #[test]
    fn broken_or_oversized_blocks_end_the_connection() {
        let mut rewriter = Rewriter::default();
        assert!(
            rewriter
                .frame(headers_frame(1, END_HEADERS, &[0xff, 0xff]))
                .is_err()
        );
        let mut rewriter = Rewriter::default();
        rewriter.frame(headers_frame(1, 0, b"")).unwrap();
        let data = Frame {
            kind: 0x0,
            flags: 0,
            stream: 1,
            payload: Vec::new(),
        };
        assert!(
            rewriter.frame(data).is_err(),
            "nothing between HEADERS and CONTINUATION"
        );
        let mut rewriter = Rewriter::default();
        rewriter.frame(headers_frame(1, 0, b"")).unwrap();
        let huge = Frame {
            kind: CONTINUATION,
            flags: 0,
            stream: 1,
            payload: vec![0; MAX_HEADER_BLOCK_BYTES + 1],
        };
        assert!(rewriter.frame(huge).is_err());
    }
}
