//! HTTP for the `http` verifier (a GET that must answer 2xx) and owner
//! notices (a JSON POST to a webhook), over http or https (the system's
//! root certificates), on the same HTTP and TLS stack the AWS SDK uses.

use bytes::Bytes;
use http_body_util::{Empty, Full};
use hyper_util::client::legacy::connect::Connect;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::{Duration, Instant};

pub fn parse(url: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err(format!("{url:?} must be an http:// or https:// URL with a host")),
    }
}

/// One GET; `Ok` on a 2xx status.
pub async fn get_ok(url: &str, deadline: Instant) -> Result<(), String> {
    let uri = parse(url)?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector()?);
    answer_ok(url, deadline, client.get(uri)).await
}

/// One POST of a JSON document; `Ok` on a 2xx status.
pub async fn post_json(url: &str, body: &serde_json::Value, deadline: Instant) -> Result<(), String> {
    let uri = parse(url)?;
    let request = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| format!("{url}: {e}"))?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector()?);
    answer_ok(url, deadline, client.request(request)).await
}

fn connector() -> Result<impl Connect + Clone + Send + Sync + 'static, String> {
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
        .map_err(|e| format!("no TLS roots: {e}"))?
        .https_or_http()
        .enable_http1()
        .build())
}

async fn answer_ok<B>(
    url: &str,
    deadline: Instant,
    call: impl std::future::Future<Output = Result<http::Response<B>, hyper_util::client::legacy::Error>>,
) -> Result<(), String> {
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(500));
    match tokio::time::timeout(left, call).await {
        Err(_) => Err(format!("{url} did not answer in time")),
        Ok(Err(e)) => Err(format!("{url}: {e}")),
        Ok(Ok(answer)) if answer.status().is_success() => Ok(()),
        Ok(Ok(answer)) => Err(format!("{url} answered {}", answer.status())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_a_scheme_and_host() {
        assert!(parse("http://127.0.0.1:8080/health").is_ok());
        assert!(parse("https://app.example.com/health").is_ok());
        assert!(parse("ftp://x/").is_err());
        assert!(parse("127.0.0.1:8080/health").is_err());
    }

    /// A one-shot loopback server answering `status` to each request.
    fn serve(status: &'static str, requests: usize) -> (String, std::thread::JoinHandle<()>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            for _ in 0..requests {
                let (mut conn, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        (url, handle)
    }

    #[tokio::test]
    async fn a_2xx_is_healthy_anything_else_is_not() {
        let deadline = Instant::now() + Duration::from_secs(10);
        let (ok, server) = serve("204 No Content", 1);
        assert_eq!(get_ok(&ok, deadline).await, Ok(()));
        server.join().unwrap();
        let (bad, server) = serve("503 Service Unavailable", 1);
        assert!(get_ok(&bad, deadline).await.unwrap_err().contains("503"));
        server.join().unwrap();
        // Nothing listens on a port that was just freed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert!(get_ok(&format!("http://127.0.0.1:{port}/"), deadline).await.is_err());
    }
}
