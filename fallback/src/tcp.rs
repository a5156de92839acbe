//! DNS over TCP framing (RFC 1035 §4.2.2, RFC 7766): a 2-byte big-endian length
//! before every message.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Reads one framed message into `buf` within `timeout`. `Ok(false)` on a clean
/// EOF before a new message; a zero-length frame is an error.
pub async fn read_msg<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> io::Result<bool> {
    let fut = async {
        let mut len = [0u8; 2];
        match r.read_exact(&mut len[..1]).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
        r.read_exact(&mut len[1..]).await?;
        let n = usize::from(u16::from_be_bytes(len));
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "zero-length message",
            ));
        }
        buf.clear();
        buf.resize(n, 0);
        r.read_exact(buf).await?;
        Ok(true)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "read timeout"))?
}

/// Writes one framed message within `timeout`.
pub async fn write_msg<W: AsyncWrite + Unpin>(
    w: &mut W,
    msg: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    let fut = async {
        let len = u16::try_from(msg.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too long"))?;
        let mut frame = Vec::with_capacity(msg.len() + 2);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(msg);
        w.write_all(&frame).await
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timeout"))?
}
