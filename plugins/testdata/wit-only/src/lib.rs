//! Test data: what an author in any language gets from the contract's WIT alone. Bindings are
//! generated from `plugin-sdk/wit/v0.1` with its `deps/` (wasi:http and what it uses); the
//! connector GETs its `url` parameter through `wasi:http/outgoing-handler` and answers
//! "rejected: fetched HTTP <status>, <n> bytes".

wit_bindgen::generate!({ path: "../../../plugin-sdk/wit/v0.1", world: "ca-connector", generate_all });

use certhost::connector::types::*;
use exports::certhost::connector::connector::Guest;
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, OutgoingBody, OutgoingRequest, Scheme};

struct WitOnly;

fn no() -> ConnectorError {
    ConnectorError::Unsupported("wit-only answers certificate-request only".into())
}

fn get(url: &str) -> Result<(u16, usize), String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", r)) => (Scheme::Https, r),
        Some(("http", r)) => (Scheme::Http, r),
        _ => return Err(format!("{url} is not an http(s) URL")),
    };
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let request = OutgoingRequest::new(Fields::new());
    request.set_scheme(Some(&scheme)).map_err(|_| "scheme")?;
    request.set_authority(Some(authority)).map_err(|_| "authority")?;
    request.set_path_with_query(Some(path)).map_err(|_| "path")?;
    let body = request.body().map_err(|_| "body")?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))?;
    let response = loop {
        match pending.get() {
            Some(r) => break r.map_err(|_| "response taken")?.map_err(|e| format!("{e:?}"))?,
            None => pending.subscribe().block(),
        }
    };
    let status = response.status();
    let incoming = response.consume().map_err(|_| "body")?;
    let stream = incoming.stream().map_err(|_| "stream")?;
    let mut n = 0;
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => n += chunk.len(),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(e) => return Err(format!("{e:?}")),
        }
    }
    Ok((status, n))
}

impl Guest for WitOnly {
    fn describe() -> Description {
        Description { name: "wit-only".into(), version: "0.0.0".into(), parameters: vec![], operations: vec![] }
    }
    fn certificate_request(_: IssueRequest, args: Vec<Param>) -> Result<Disposition, ConnectorError> {
        let url = args.iter().find(|p| p.name == "url").map(|p| p.value.clone());
        let url = url.ok_or_else(|| ConnectorError::Misconfigured("missing parameter url".into()))?;
        let (status, n) = get(&url).map_err(ConnectorError::Unreachable)?;
        Ok(Disposition::Rejected(format!("fetched HTTP {status}, {n} bytes")))
    }
    fn poll(_: String, _: Vec<Param>) -> Result<Disposition, ConnectorError> {
        Err(no())
    }
    fn renew(_: RenewRequest, _: Vec<Param>) -> Result<Disposition, ConnectorError> {
        Err(no())
    }
    fn revoke(_: RevokeRequest, _: Vec<Param>) -> Result<(), ConnectorError> {
        Err(no())
    }
    fn test_connection(_: Vec<Param>) -> Result<(), ConnectorError> {
        Err(no())
    }
    fn list_certificates(_: Vec<Param>, _: Option<String>) -> Result<CertificatePage, ConnectorError> {
        Err(no())
    }
    fn update_order(_: String, _: OrderAction, _: Vec<Param>) -> Result<Disposition, ConnectorError> {
        Err(no())
    }
}

export!(WitOnly);
