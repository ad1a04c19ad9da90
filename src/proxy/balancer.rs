//! Connections from an L4 load balancer: the PROXY protocol header (v1 or v2) that starts them
//! names the real client, whose address then counts for the per-address limits, the logs and the
//! audit. Only the balancers' networks (`server.proxy_protocol`) may send one; from them, one is
//! required (a balancer that does not send it is misconfigured, and certgate would otherwise
//! count every client as the balancer).

use std::net::SocketAddr;
use std::time::Duration;

use ppp::{HeaderResult, PartialResult as _};
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

/// The longest PROXY header read (a v2 header with its TLVs can be larger; balancers send a few
/// dozen bytes).
const MAX_HEADER: usize = 4096;

/// Why a balancer's connection was closed before its handshake.
#[derive(Debug, thiserror::Error)]
pub(super) enum BalancerError {
    /// No complete header within the handshake timeout.
    #[error("no PROXY header within {0:?}")]
    Timeout(Duration),
    /// The connection does not start with a PROXY header, or with a malformed one.
    #[error("the connection does not start with a valid PROXY protocol header")]
    Invalid,
    /// The socket failed.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the PROXY header at the start of `tcp` and returns the client it names (`peer` itself for
/// a balancer's own health checks: v2 LOCAL, v1 UNKNOWN). The bytes after it stay unread.
pub(super) async fn real_client(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    within: Duration,
) -> Result<SocketAddr, BalancerError> {
    tokio::time::timeout(within, read(tcp, peer))
        .await
        .map_err(|_| BalancerError::Timeout(within))?
}

async fn read(tcp: &mut TcpStream, peer: SocketAddr) -> Result<SocketAddr, BalancerError> {
    let mut buf = vec![0u8; MAX_HEADER];
    let mut seen_before = 0;
    loop {
        // Peek, so that nothing after the header is taken from the TLS handshake.
        let seen = tcp.peek(&mut buf).await?;
        if seen == 0 {
            return Err(BalancerError::Invalid);
        }
        let parsed = HeaderResult::parse(&buf[..seen]);
        if parsed.is_incomplete() {
            if seen == MAX_HEADER {
                return Err(BalancerError::Invalid);
            }
            if seen == seen_before {
                // Nothing new yet: peek returns at once while bytes wait, so give the peer a moment.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen_before = seen;
            continue;
        }
        let (length, client) = match parsed {
            HeaderResult::V1(Ok(header)) => (
                header.header.len(),
                match header.addresses {
                    ppp::v1::Addresses::Tcp4(ip) => {
                        SocketAddr::from((ip.source_address, ip.source_port))
                    }
                    ppp::v1::Addresses::Tcp6(ip) => {
                        SocketAddr::from((ip.source_address, ip.source_port))
                    }
                    ppp::v1::Addresses::Unknown => peer,
                },
            ),
            HeaderResult::V2(Ok(header)) => (
                header.len(),
                match (header.command, header.addresses) {
                    (ppp::v2::Command::Local, _) => peer,
                    (_, ppp::v2::Addresses::IPv4(ip)) => {
                        SocketAddr::from((ip.source_address, ip.source_port))
                    }
                    (_, ppp::v2::Addresses::IPv6(ip)) => {
                        SocketAddr::from((ip.source_address, ip.source_port))
                    }
                    _ => peer,
                },
            ),
            _ => return Err(BalancerError::Invalid),
        };
        let mut header = vec![0u8; length];
        tcp.read_exact(&mut header).await?;
        return Ok(client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    async fn through(header: &[u8]) -> (Result<SocketAddr, BalancerError>, Vec<u8>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut sent = header.to_vec();
        sent.extend_from_slice(b"rest");
        let client = tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            // In two pieces, as a slow balancer might.
            let (first, second) = sent.split_at(sent.len() / 2);
            tcp.write_all(first).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            tcp.write_all(second).await.unwrap();
            tcp
        });
        let (mut tcp, peer) = listener.accept().await.unwrap();
        let client_addr = real_client(&mut tcp, peer, Duration::from_secs(5)).await;
        let _keep = client.await.unwrap();
        let mut rest = vec![0u8; 4];
        let rest = match client_addr {
            Ok(_) => {
                tcp.read_exact(&mut rest).await.unwrap();
                rest
            }
            Err(_) => Vec::new(),
        };
        (client_addr, rest)
    }

    #[tokio::test]
    async fn v1_and_v2_name_the_client_and_leave_the_rest() {
        let (client, rest) = through(b"PROXY TCP4 198.51.100.7 192.0.2.1 40000 443\r\n").await;
        assert_eq!(client.unwrap(), "198.51.100.7:40000".parse().unwrap());
        assert_eq!(rest, b"rest");
        let (client, _) = through(b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n").await;
        assert_eq!(client.unwrap(), "[2001:db8::7]:40000".parse().unwrap());

        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 12]);
        v2.extend_from_slice(&[203, 0, 113, 9, 192, 0, 2, 1]);
        v2.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb]);
        let (client, rest) = through(&v2).await;
        assert_eq!(client.unwrap(), "203.0.113.9:40000".parse().unwrap());
        assert_eq!(rest, b"rest");
    }

    #[tokio::test]
    async fn a_missing_or_malformed_header_is_refused() {
        for bad in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
            b"PROXY TCP4 nonsense\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
        ] {
            let (client, _) = through(bad).await;
            assert!(client.is_err(), "{bad:?}");
        }
    }
}
