//! `http`: a GET that must answer 2xx. Plain HTTP/1.1 over TCP, enough for a
//! health endpoint; https is not supported yet and is refused at preflight.

use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Url {
    host: String,
    port: u16,
    path: String,
}

pub fn parse(url: &str) -> Result<Url, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("http verifier: {url:?} must start with http:// (https health checks are not supported yet)")
    })?;
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().map_err(|_| format!("http verifier: bad port in {url:?}"))?),
        None => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("http verifier: no host in {url:?}"));
    }
    Ok(Url { host: host.to_owned(), port, path })
}

/// One GET; `Ok` on a 2xx status.
pub async fn get_ok(url: &str, deadline: Instant) -> Result<(), String> {
    let u = parse(url)?;
    let left = deadline.saturating_duration_since(Instant::now()).max(std::time::Duration::from_millis(500));
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((u.host.as_str(), u.port)).await.map_err(|e| e.to_string())?;
        let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: rekey\r\n\r\n", u.path, u.host);
        stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut head = vec![0u8; 64];
        let n = stream.read(&mut head).await.map_err(|e| e.to_string())?;
        let status_line = String::from_utf8_lossy(&head[..n]);
        let code: u16 = status_line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("not an HTTP answer")?;
        if (200..300).contains(&code) {
            Ok(())
        } else {
            Err(format!("{url} answered {code}"))
        }
    };
    match tokio::time::timeout(left, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("{url} did not answer in time")),
    }
}
