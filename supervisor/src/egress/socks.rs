//! SOCKS5 (RFC 1928) on the proxy port: no authentication, CONNECT only,
//! names resolved by the proxy like every other request.
use super::check::Denial;
use super::copy::splice_both;
use super::proxy::{head_late, open, Conn, Shared};
use aiops_policy::net::HostPort;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// SOCKS5 reply codes.
const SOCKS_NOT_ALLOWED: u8 = 0x02;
const SOCKS_HOST_UNREACHABLE: u8 = 0x04;
const SOCKS_REFUSED: u8 = 0x05;
const SOCKS_BAD_COMMAND: u8 = 0x07;

pub async fn socks5(
    mut rd: BufReader<TcpStream>,
    sh: &Shared,
    conn: &Conn,
    head_by: tokio::time::Instant,
) -> Result<String, Denial> {
    conn.set(|r| r.protocol = "socks5".into());
    let io = |e: std::io::Error| Denial::new(400, format!("socks5: {e}"));
    let head = tokio::time::timeout_at(head_by, socks5_request(&mut rd))
        .await
        .map_err(|_| Denial::new(408, format!("socks5: {}", head_late(sh))))?;
    let target = match head {
        Ok(t) => t,
        Err((code, d)) => {
            let _ = rd.get_mut().write_all(&socks_reply(code)).await;
            return Err(d);
        }
    };
    let upstream = match open(sh, conn, "socks5", &target).await {
        Ok(u) => u,
        Err(d) => {
            let code = match d.status {
                403 => SOCKS_NOT_ALLOWED,
                502 if !d.dns && d.reason.contains("refused") => SOCKS_REFUSED,
                _ => SOCKS_HOST_UNREACHABLE,
            };
            let _ = rd.get_mut().write_all(&socks_reply(code)).await;
            return Err(d);
        }
    };
    rd.get_mut().write_all(&socks_reply(0)).await.map_err(io)?;
    let leftover = rd.buffer().to_vec();
    Ok(splice_both(rd.into_inner(), upstream, leftover, sh, conn).await)
}

/// RFC 1928: greeting (no authentication), then one CONNECT request.
async fn socks5_request(rd: &mut BufReader<TcpStream>) -> Result<HostPort, (u8, Denial)> {
    let fail = |code: u8, why: String| (code, Denial::new(400, format!("socks5: {why}")));
    let io = |e: std::io::Error| fail(1, e.to_string());
    let mut g = [0u8; 2];
    rd.read_exact(&mut g).await.map_err(io)?;
    let mut methods = vec![0u8; usize::from(g[1])];
    rd.read_exact(&mut methods).await.map_err(io)?;
    if !methods.contains(&0) {
        let _ = rd.get_mut().write_all(&[5, 0xff]).await;
        return Err(fail(
            1,
            "the client offers no method without authentication".into(),
        ));
    }
    rd.get_mut().write_all(&[5, 0]).await.map_err(io)?;
    let mut req = [0u8; 4];
    rd.read_exact(&mut req).await.map_err(io)?;
    if req[0] != 5 || req[1] != 1 {
        return Err(fail(
            SOCKS_BAD_COMMAND,
            format!("command {} (only CONNECT)", req[1]),
        ));
    }
    let host = match req[3] {
        1 => {
            let mut a = [0u8; 4];
            rd.read_exact(&mut a).await.map_err(io)?;
            std::net::Ipv4Addr::from(a).to_string()
        }
        3 => {
            let mut len = [0u8; 1];
            rd.read_exact(&mut len).await.map_err(io)?;
            let mut name = vec![0u8; usize::from(len[0])];
            rd.read_exact(&mut name).await.map_err(io)?;
            String::from_utf8_lossy(&name).into_owned()
        }
        4 => {
            let mut a = [0u8; 16];
            rd.read_exact(&mut a).await.map_err(io)?;
            format!("[{}]", std::net::Ipv6Addr::from(a))
        }
        t => return Err(fail(8, format!("address type {t}"))),
    };
    let mut port = [0u8; 2];
    rd.read_exact(&mut port).await.map_err(io)?;
    HostPort::parse(&format!("{host}:{}", u16::from_be_bytes(port)))
        .map_err(|e| fail(SOCKS_HOST_UNREACHABLE, format!("bad target: {e}")))
}

fn socks_reply(code: u8) -> [u8; 10] {
    [5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}
