//! The client side of the admin API, for `ses-relay cutover status|set` run
//! on the relay's host: address and token file come from the same config.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::AdminConfig;

/// The token to read with: `admin.read-token-file`'s, else `admin.token-file`'s
/// (the write token reads too), the first file that is readable and not
/// empty. None: the request goes without, which a guarded API answers 401.
pub fn read_token(config: &AdminConfig) -> Option<String> {
    [&config.read_token_file, &config.token_file]
        .into_iter()
        .filter(|path| !path.as_os_str().is_empty())
        .find_map(|path| crate::files::read_token(path).ok().flatten())
}

/// An HTTP answer: status code and body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Response body.
    pub body: String,
}

/// Sends one request to the admin API at `addr` and reads the whole answer
/// (hyper's HTTP/1 client on a small runtime of its own: the CLI is not async).
/// Connecting is bounded to 5 s, the whole exchange to 30 s.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<Answer> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            exchange(addr, method, path, token, body),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 30 s"))?
    })
}

async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<Answer> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .map_err(std::io::Error::other)?;
    let response = client
        .request(request)
        .await
        .map_err(std::io::Error::other)?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
