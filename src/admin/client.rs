//! The client side of the admin API, for `ses-relay cutover status|set` run
//! on the relay's host: address and token file come from the same config.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

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

/// One HTTP/1.1 request with `Connection: close`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    head.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head:?}")))?;
    Ok(Answer {
        status,
        body: body.to_string(),
    })
}
