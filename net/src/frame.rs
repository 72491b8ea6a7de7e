//! Kafka framing: a big-endian i32 size, then the request or response. Reading is
//! bounded by `socket.request.max.bytes`; the header is parsed defensively, since the
//! protocol crate assumes well-formed input.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("connection closed mid-frame")]
    Truncated,
    #[error("frame of {size} bytes exceeds socket.request.max.bytes ({max})")]
    TooLarge { size: i64, max: usize },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<BytesMut>, FrameError> {
    match read_size(r, max).await? {
        Some(size) => read_body(r, size).await.map(Some),
        None => Ok(None),
    }
}

/// Reads a frame's size and checks it against `max`; `Ok(None)` on a clean end of
/// stream between frames.
pub async fn read_size<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<usize>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    let size = i32::from_be_bytes(len);
    if size < 0 || size as usize > max {
        return Err(FrameError::TooLarge {
            size: size.into(),
            max,
        });
    }
    Ok(Some(size as usize))
}

/// Reads the `size` bytes of a frame's body.
pub async fn read_body<R: AsyncRead + Unpin>(
    r: &mut R,
    size: usize,
) -> Result<BytesMut, FrameError> {
    let mut buf = BytesMut::with_capacity(size);
    read_into(r, &mut buf, size).await?;
    Ok(buf)
}

/// Appends the `size` bytes of a frame's body to `buf`, into its spare capacity:
/// zeroing a frame of megabytes first would cost a pass.
pub async fn read_into<R: AsyncRead + Unpin, B: BufMut>(
    r: &mut R,
    buf: &mut B,
    size: usize,
) -> Result<(), FrameError> {
    let mut left = size;
    while left > 0 {
        let mut limited = (&mut *r).take(left as u64);
        match limited.read_buf(buf).await? {
            0 => return Err(FrameError::Truncated),
            n => left -= n,
        }
    }
    Ok(())
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("request of {0} bytes is too short for a header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("malformed request header: {0}")]
    Malformed(String),
}

/// A parsed request header and the body that follows it.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: Bytes,
}

/// Parses the request header at the front of a frame.
pub fn parse_request(frame: Bytes) -> Result<Request, HeaderError> {
    if frame.len() < 8 {
        return Err(HeaderError::TooShort(frame.len()));
    }
    let key = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let api_key = ApiKey::try_from(key).map_err(|_| HeaderError::UnknownApi(key))?;
    let header_version = api_key.request_header_version(version);
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, header_version)
        .map_err(|e| HeaderError::Malformed(e.to_string()))?;
    Ok(Request {
        api_key,
        header,
        body,
    })
}
