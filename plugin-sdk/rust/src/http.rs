//! A small blocking HTTP client over `wasi:http/outgoing-handler`. The host decides which
//! hosts are reachable (the CA account's allowed hosts); a refused host is an error here.

use wasi::http::outgoing_handler;
/// The method of [`request`], re-exported so a connector needs no `wasi` dependency of its
/// own to send a GET with headers (`http::request(http::Method::Get, url, &headers, None)`).
pub use wasi::http::types::Method;
use wasi::http::types::{ErrorCode, Fields, OutgoingBody, OutgoingRequest, Scheme};

use crate::ConnectorError;

/// A response: status, headers (lowercase names) and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Headers as (name, value) pairs.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    pub body: Vec<u8>,
}

/// GET `url`.
pub fn get(url: &str) -> Result<Response, ConnectorError> {
    request(Method::Get, url, &[], None)
}

/// POST `body` to `url` with a content type.
pub fn post(url: &str, content_type: &str, body: &[u8]) -> Result<Response, ConnectorError> {
    request(Method::Post, url, &[("content-type", content_type.as_bytes())], Some(body))
}

/// Sends one request and reads the whole response.
pub fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &[u8])],
    body: Option<&[u8]>,
) -> Result<Response, ConnectorError> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else {
        return Err(ConnectorError::Misconfigured(format!("URL {url} must start with http:// or https://")));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(&name.to_string(), &value.to_vec())
            .map_err(|e| ConnectorError::Internal(format!("bad header {name}: {e:?}")))?;
    }
    // The length is known: say it. Without it the body goes chunked, which some CA servers
    // (Python's http.server among them) read as an empty body.
    if let Some(data) = body
        && !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-length"))
    {
        fields
            .append(&"content-length".to_owned(), &data.len().to_string().into_bytes())
            .map_err(|e| ConnectorError::Internal(format!("bad header content-length: {e:?}")))?;
    }
    let req = OutgoingRequest::new(fields);
    let bad = |what: &str| ConnectorError::Internal(format!("cannot build the request: invalid {what}"));
    req.set_method(&method).map_err(|_| bad("method"))?;
    req.set_scheme(Some(&scheme)).map_err(|_| bad("scheme"))?;
    req.set_authority(Some(authority)).map_err(|_| unencoded("host", authority))?;
    req.set_path_with_query(Some(path)).map_err(|_| unencoded("path or query", path))?;
    let outgoing = req.body().map_err(|_| bad("body"))?;
    // The request goes out first and its body after: the host buffers only two chunks of a
    // body until the request is sent, so a body written before `handle` blocked at the third
    // chunk (over 4 KiB: an ACME order for a few dozen names) until the call timed out.
    let future = outgoing_handler::handle(req, None).map_err(|e| map_error(url, e))?;
    // A body the host stops taking (the request was denied, the connection refused) fails to
    // write; the response then says why, and that is the error reported.
    let mut body_failed = None;
    if let Some(data) = body {
        let stream = outgoing.write().map_err(|_| bad("body stream"))?;
        for chunk in data.chunks(4096) {
            if let Err(e) = stream.blocking_write_and_flush(chunk) {
                body_failed = Some(e);
                break;
            }
        }
        drop(stream);
    }
    if body_failed.is_none() {
        OutgoingBody::finish(outgoing, None).map_err(|e| map_error(url, e))?;
    } else {
        drop(outgoing);
    }
    let incoming = loop {
        match future.get() {
            Some(result) => {
                break result
                    .map_err(|_| ConnectorError::Internal("response already taken".into()))?
                    .map_err(|e| map_error(url, e))?;
            }
            None => future.subscribe().block(),
        }
    };
    if let Some(e) = body_failed {
        return Err(ConnectorError::Unreachable(format!("sending the body to {url} failed: {e:?}")));
    }
    let status = incoming.status();
    let headers = incoming.headers().entries();
    let body_res = incoming.consume().map_err(|_| ConnectorError::Internal("response body unavailable".into()))?;
    let stream = body_res.stream().map_err(|_| ConnectorError::Internal("response body unavailable".into()))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => body.extend_from_slice(chunk.as_slice()),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(e) => {
                return Err(ConnectorError::Unreachable(format!("reading the response from {url} failed: {e:?}")));
            }
        }
    }
    Ok(Response { status, headers, body })
}

/// The error for a URL part the request builder refused: names the first character a URL may
/// not hold as it is, and how to write it (walkthrough of stop 46: "invalid path" sent an
/// author looking at a URL whose query held a space). What no URL part takes (a space, a
/// control character, a non-ASCII one) is named before what only RFC 3986 refuses, which the
/// builder may accept.
fn unencoded(part: &str, text: &str) -> ConnectorError {
    let never = |c: char| c.is_ascii_control() || c == ' ' || !c.is_ascii();
    let rfc3986 = |c: char| c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c);
    let found = text.char_indices().find(|(_, c)| never(*c)).or_else(|| text.char_indices().find(|(_, c)| !rfc3986(*c)));
    match found {
        Some((_, c)) if part == "host" && !c.is_ascii() => ConnectorError::Internal(
            "cannot build the request: the URL's host has non-ASCII letters; give it in its IDNA (punycode, xn--…) form"
                .into(),
        ),
        Some((at, c)) => {
            let mut utf8 = [0u8; 4];
            let encoded: String = c.encode_utf8(&mut utf8).bytes().map(|b| format!("%{b:02X}")).collect();
            ConnectorError::Internal(format!(
                "cannot build the request: the URL's {part} holds {} at byte {at}, which a URL may not hold as it is; \
                 percent-encode it ({encoded})",
                if c == ' ' { "a space".to_owned() } else { format!("{c:?}") }
            ))
        }
        None => ConnectorError::Internal(format!("cannot build the request: invalid {part} in the URL")),
    }
}

fn map_error(url: &str, e: ErrorCode) -> ConnectorError {
    match e {
        ErrorCode::HttpRequestDenied => ConnectorError::Misconfigured(format!(
            "the host denied the request to {url}: it is not among the CA account's allowed hosts"
        )),
        other => ConnectorError::Unreachable(format!("{url}: {}", error_words(&other))),
    }
}

/// What a failed request met, in words an operator reads in an order's error and a webhook
/// (ACME walkthrough of stop 46: "ErrorCode::ConnectionRefused"); the rarer codes as WASI
/// names them.
fn error_words(e: &ErrorCode) -> String {
    match e {
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::ConnectionTimeout => "the connection timed out".into(),
        ErrorCode::ConnectionReadTimeout => "no answer came in time".into(),
        ErrorCode::ConnectionTerminated => "the connection was closed before the answer".into(),
        ErrorCode::DnsTimeout => "the DNS lookup timed out".into(),
        ErrorCode::DnsError(_) => "the DNS lookup failed".into(),
        ErrorCode::DestinationNotFound => "no such host (DNS)".into(),
        ErrorCode::DestinationUnavailable => "the host is unavailable".into(),
        ErrorCode::DestinationIpUnroutable => "no route to the host".into(),
        ErrorCode::TlsProtocolError => "the TLS handshake failed".into(),
        ErrorCode::TlsCertificateError => "the server's TLS certificate was refused".into(),
        other => format!("{other:?}"),
    }
}
