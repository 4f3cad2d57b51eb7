//! The PROXY protocol (HAProxy's, v1 text and v2 binary) in front of SMTP:
//! behind a Network Load Balancer the TCP peer is the balancer, and the
//! client Postfix is named by the header the balancer sends first.
//!
//! The header is read exactly: not one byte past its end, so whatever the
//! client sends next (its first SMTP bytes, in the same segment) is left in
//! the socket for the session. v2 says its own length after a fixed 16 bytes;
//! v1 is a line of at most 107 bytes ending at its first CR LF, read a byte at
//! a time after the first 8 (both versions are at least 15 bytes long). The
//! parsing itself is the `ppp` crate's.
//!
//! `LOCAL` (v2) and `UNKNOWN` (v1) headers, and v2 addresses that are neither
//! IPv4 nor IPv6, mean "the balancer speaks for itself" (a health check): the
//! spec says to use the connection's own addresses, so the client is the
//! balancer, and `allowed-clients` decides as for anybody else.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// A trusted peer that has not sent a complete header by then is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// v1's longest line, CR LF included (the spec's 107 bytes).
const V1_MAX: usize = 107;

/// The first 8 bytes of v2's 12-byte signature.
const V2_START: &[u8; 8] = b"\r\n\r\n\0\r\nQ";

/// What the header says about the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// A proxied connection from this source address.
    Proxied(SocketAddr),
    /// The balancer's own connection (v2 `LOCAL`, v1 `UNKNOWN`, or no IP
    /// addresses): the client is the TCP peer.
    Local,
}

/// Why no usable header arrived.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Nothing complete within [`HEADER_TIMEOUT`].
    #[error("no PROXY header within {0:?}")]
    TimedOut(Duration),
    /// The peer closed (or reset) the connection before the header ended.
    #[error("connection closed before the PROXY header ended")]
    Closed,
    /// The bytes are not a PROXY protocol header.
    #[error("invalid PROXY header: {0}")]
    Invalid(String),
}

impl ProxyError {
    /// The `ses_relay_smtp_connections_total` result label.
    pub fn label(&self) -> &'static str {
        match self {
            ProxyError::TimedOut(_) | ProxyError::Closed => "proxy_header_missing",
            ProxyError::Invalid(_) => "proxy_header_invalid",
        }
    }
}

/// The client of a connection from a trusted balancer at `peer`: the header's
/// source address, or `peer` itself for a `LOCAL` header.
pub async fn client<R: AsyncRead + Unpin>(
    stream: &mut R,
    peer: SocketAddr,
    timeout: Duration,
) -> Result<SocketAddr, ProxyError> {
    match tokio::time::timeout(timeout, read_header(stream)).await {
        Ok(Ok(Header::Proxied(client))) => Ok(client),
        Ok(Ok(Header::Local)) => Ok(peer),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(ProxyError::TimedOut(timeout)),
    }
}

/// Reads one header, and nothing after it.
pub async fn read_header<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Header, ProxyError> {
    let mut buf = vec![0u8; 8];
    read_exact(stream, &mut buf).await?;
    if buf.as_slice() == V2_START {
        buf.resize(16, 0);
        read_exact(stream, &mut buf[8..]).await?;
        let length = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        buf.resize(16 + length, 0);
        read_exact(stream, &mut buf[16..]).await?;
        return parse_v2(&buf);
    }
    if !buf.starts_with(b"PROXY ") {
        return Err(ProxyError::Invalid(
            "neither the v1 `PROXY ` nor the v2 signature".into(),
        ));
    }
    // Up to the first CR, then exactly one more byte, which must be LF.
    while buf.len() < V1_MAX && !buf.ends_with(b"\r") {
        let mut byte = [0u8; 1];
        read_exact(stream, &mut byte).await?;
        buf.push(byte[0]);
    }
    if !buf.ends_with(b"\r") {
        return Err(ProxyError::Invalid(format!(
            "v1 line longer than {V1_MAX} bytes"
        )));
    }
    let mut byte = [0u8; 1];
    read_exact(stream, &mut byte).await?;
    buf.push(byte[0]);
    parse_v1(&buf)
}

async fn read_exact<R: AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut [u8],
) -> Result<(), ProxyError> {
    stream
        .read_exact(buf)
        .await
        .map(|_| ())
        .map_err(|_| ProxyError::Closed)
}

fn parse_v1(bytes: &[u8]) -> Result<Header, ProxyError> {
    use ppp::v1::Addresses;
    let header =
        ppp::v1::Header::try_from(bytes).map_err(|err| ProxyError::Invalid(err.to_string()))?;
    if header.header.len() != bytes.len() {
        return Err(ProxyError::Invalid("v1 line does not end at CR LF".into()));
    }
    Ok(match header.addresses {
        Addresses::Tcp4(a) => {
            Header::Proxied(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        Addresses::Tcp6(a) => {
            Header::Proxied(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        Addresses::Unknown => Header::Local,
    })
}

fn parse_v2(bytes: &[u8]) -> Result<Header, ProxyError> {
    use ppp::v2::{Addresses, Command};
    let header =
        ppp::v2::Header::try_from(bytes).map_err(|err| ProxyError::Invalid(err.to_string()))?;
    if header.command == Command::Local {
        return Ok(Header::Local);
    }
    Ok(match header.addresses {
        Addresses::IPv4(a) => {
            Header::Proxied(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        Addresses::IPv6(a) => {
            Header::Proxied(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        Addresses::Unspecified | Addresses::Unix(_) => Header::Local,
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&((addresses.len() + tlvs.len()) as u16).to_be_bytes());
        out.extend_from_slice(addresses);
        out.extend_from_slice(tlvs);
        out
    }

    fn v2_tcp4(src: [u8; 4], port: u16) -> Vec<u8> {
        let mut addresses = src.to_vec();
        addresses.extend_from_slice(&[10, 0, 0, 1]);
        addresses.extend_from_slice(&port.to_be_bytes());
        addresses.extend_from_slice(&25u16.to_be_bytes());
        // An AWS VPC endpoint TLV (type 0xEA), as NLBs may add: skipped.
        v2(0x1, 0x11, &addresses, &[0xEA, 0x00, 0x03, 0x01, b'v', b'p'])
    }

    /// Feeds `input`, then reads a header; returns it and the bytes left unread.
    async fn read_all(input: &[u8]) -> (Result<Header, ProxyError>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(4096);
        client.write_all(input).await.unwrap();
        drop(client);
        let header = read_header(&mut server).await;
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        (header, rest)
    }

    fn addr(text: &str) -> Header {
        Header::Proxied(text.parse().unwrap())
    }

    #[tokio::test]
    async fn v1_and_v2_name_the_client_and_leave_what_follows_unread() {
        let cases: Vec<(Vec<u8>, Header)> = vec![
            (
                b"PROXY TCP4 202.217.1.2 10.0.0.1 40000 25\r\n".to_vec(),
                addr("202.217.1.2:40000"),
            ),
            (
                b"PROXY TCP6 2001:db8::7 2001:db8::1 40001 25\r\n".to_vec(),
                addr("[2001:db8::7]:40001"),
            ),
            (b"PROXY UNKNOWN\r\n".to_vec(), Header::Local),
            (
                b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n".to_vec(),
                Header::Local,
            ),
            (v2_tcp4([202, 217, 1, 2], 40000), addr("202.217.1.2:40000")),
            (
                v2(
                    0x1,
                    0x21,
                    &[
                        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0x20, 0x01,
                        0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x9c, 0x41, 0, 25,
                    ],
                    &[],
                ),
                addr("[2001:db8::7]:40001"),
            ),
            (v2(0x0, 0x00, &[], &[]), Header::Local),
            (v2(0x1, 0x00, &[], &[]), Header::Local),
        ];
        for (header, expected) in cases {
            let mut input = header.clone();
            input.extend_from_slice(b"EHLO postfix.test\r\n");
            let (got, rest) = read_all(&input).await;
            assert_eq!(
                got.unwrap(),
                expected,
                "{:?}",
                String::from_utf8_lossy(&header)
            );
            assert_eq!(rest, b"EHLO postfix.test\r\n", "{header:?}");
        }
    }

    #[tokio::test]
    async fn garbage_truncation_and_overlong_lines_are_refused() {
        let mut long = b"PROXY TCP4 ".to_vec();
        long.resize(200, b'1');
        let mut truncated_v2 = v2_tcp4([1, 2, 3, 4], 5);
        truncated_v2.truncate(20);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"EHLO postfix.test\r\n".to_vec(), "proxy_header_invalid"),
            (b"PROXY TCP4 1.2.3\r\n".to_vec(), "proxy_header_invalid"),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX".to_vec(),
                "proxy_header_invalid",
            ),
            (
                b"PROXY TCP4 999.2.3.4 5.6.7.8 1 2\r\n".to_vec(),
                "proxy_header_invalid",
            ),
            (long, "proxy_header_invalid"),
            (b"PROXY TCP4 1.2.3.4".to_vec(), "proxy_header_missing"),
            (truncated_v2, "proxy_header_missing"),
            (
                b"\r\n\r\n\0\r\nQUIT\n\x30\x11\0\0".to_vec(),
                "proxy_header_invalid",
            ),
            (b"".to_vec(), "proxy_header_missing"),
        ];
        for (input, label) in cases {
            let (got, _) = read_all(&input).await;
            let err = got.expect_err(&String::from_utf8_lossy(&input));
            assert_eq!(
                err.label(),
                label,
                "{:?}: {err}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    #[tokio::test]
    async fn header_split_across_segments_is_read_whole() {
        let header = b"PROXY TCP4 202.217.1.2 10.0.0.1 40000 25\r\n";
        let (mut client, mut server) = tokio::io::duplex(4096);
        let reader = tokio::spawn(async move {
            let header = read_header(&mut server).await;
            (header, server)
        });
        for byte in header {
            client.write_all(&[*byte]).await.unwrap();
            tokio::task::yield_now().await;
        }
        client.write_all(b"QUIT\r\n").await.unwrap();
        drop(client);
        let (got, mut server) = reader.await.unwrap();
        assert_eq!(got.unwrap(), addr("202.217.1.2:40000"));
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"QUIT\r\n");
    }

    #[tokio::test(start_paused = true)]
    async fn silence_or_a_partial_header_times_out_after_five_seconds() {
        let peer: SocketAddr = "10.0.0.5:1234".parse().unwrap();
        for sent in [&b""[..], b"PROXY TCP4 1.2.3.4 ", b"\r\n\r\n\0\r\nQUIT\n"] {
            let (mut client, mut server) = tokio::io::duplex(4096);
            client.write_all(sent).await.unwrap();
            let started = tokio::time::Instant::now();
            let err = client_of(&mut server, peer).await.unwrap_err();
            assert!(matches!(err, ProxyError::TimedOut(_)), "{err}");
            assert_eq!(started.elapsed(), HEADER_TIMEOUT);
            drop(client);
        }
    }

    #[tokio::test]
    async fn local_means_the_balancer_itself() {
        let peer: SocketAddr = "10.0.0.5:1234".parse().unwrap();
        let (mut client, mut server) = tokio::io::duplex(4096);
        client.write_all(&v2(0x0, 0x00, &[], &[])).await.unwrap();
        assert_eq!(client_of(&mut server, peer).await.unwrap(), peer);
    }

    async fn client_of(
        stream: &mut tokio::io::DuplexStream,
        peer: SocketAddr,
    ) -> Result<SocketAddr, ProxyError> {
        client(stream, peer, HEADER_TIMEOUT).await
    }
}
