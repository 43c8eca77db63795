//! Test data for the host's sandbox: each `mode` misbehaves in one way.
//!   loop     spin forever (the deadline must stop it)
//!   memory   allocate until the memory cap stops it
//!   trap     hit `unreachable`
//!   http     fetch the `url` parameter (the host must deny unlisted hosts)
//!   garbage  return an "issued" certificate that is not one
//!   good-log log a line and answer rejected (a well-behaved call)
//!   http-many   open `n` requests to `url` at once, then wait for them all
//!   fields-bomb keep `n` header sets of 120 KiB each (host memory, not the guest's)
//!   log-flood   log `n` lines of 4,000 characters
//!   panic       panic with a message (Rust writes it to stderr, then traps)
//!   post        POST "hello" to `url` with the SDK; the answer's body becomes the reason
//!   echo-secret fail with an error and a rejection holding `secret` (declared sensitive)

use certhost_plugin_sdk::*;

struct Hostile;

impl Connector for Hostile {
    fn describe() -> Description {
        Description {
            name: "hostile".into(),
            version: "0.0.0".into(),
            parameters: vec![ParameterSpec {
                name: "secret".into(),
                description: "what the echo-secret mode puts in its error".into(),
                required: false,
                sensitive: true,
                default: None,
            }],
            operations: vec![],
        }
    }

    fn certificate_request(_request: IssueRequest, args: Vec<Param>) -> Result<Disposition, ConnectorError> {
        match arg(&args, "mode")? {
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 4 * 1024 * 1024]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => {
                #[allow(unconditional_panic)]
                let v: Vec<u8> = Vec::new();
                let i = std::hint::black_box(3usize);
                Ok(Disposition::Rejected(format!("{}", v[i])))
            }
            "http" => {
                let r = http::get(arg(&args, "url")?)?;
                Ok(Disposition::Rejected(format!("fetched HTTP {}", r.status)))
            }
            // A refused request the connector handles, then its own answer: the answer is
            // what the host reports, not the refusal.
            "http-handled" => {
                let _ = http::get(arg(&args, "url")?);
                Err(ConnectorError::Unauthorized("the CA refused the API key".into()))
            }
            "garbage" => Ok(Disposition::Issued(Issued {
                certificate: "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".into(),
                chain: vec![],
                ca_order_id: None,
            })),
            "good-log" => {
                log(Level::Info, "well-behaved call");
                let n = cache_get("count").and_then(|c| c.parse::<u32>().ok()).unwrap_or(0) + 1;
                cache_set("count", &n.to_string(), 60);
                Ok(Disposition::Rejected(format!("call {n}")))
            }
            "http-many" => {
                use wasi::http::{outgoing_handler, types};
                let url = arg(&args, "url")?;
                let rest = url.strip_prefix("http://").ok_or(ConnectorError::Misconfigured("url: http only".into()))?;
                let (authority, path) =
                    rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
                let mut pending = Vec::new();
                let mut refused = 0;
                for _ in 0..count(&args)? {
                    let req = types::OutgoingRequest::new(types::Fields::new());
                    let _ = req.set_authority(Some(authority));
                    let _ = req.set_path_with_query(Some(&path));
                    let _ = req.set_scheme(Some(&types::Scheme::Http));
                    match outgoing_handler::handle(req, None) {
                        Ok(f) => pending.push(f),
                        Err(_) => refused += 1,
                    }
                }
                let (mut answered, mut failed) = (0, 0);
                for f in &pending {
                    loop {
                        match f.get() {
                            Some(Ok(Ok(_))) => answered += 1,
                            Some(_) => failed += 1,
                            None => {
                                f.subscribe().block();
                                continue;
                            }
                        }
                        break;
                    }
                }
                Ok(Disposition::Rejected(format!("{answered} answered, {failed} failed, {refused} refused")))
            }
            "post-impatient" => {
                // A POST that waits one second for its answer, then reads a timeout as the SDK
                // does: "unreachable".
                use wasi::http::{outgoing_handler, types};
                let url = arg(&args, "url")?;
                let rest = url.strip_prefix("http://").ok_or(ConnectorError::Misconfigured("url: http only".into()))?;
                let (authority, path) =
                    rest.split_once('/').map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
                let req = types::OutgoingRequest::new(types::Fields::new());
                let _ = req.set_method(&types::Method::Post);
                let _ = req.set_authority(Some(authority));
                let _ = req.set_path_with_query(Some(&path));
                let _ = req.set_scheme(Some(&types::Scheme::Http));
                let options = types::RequestOptions::new();
                let _ = options.set_first_byte_timeout(Some(1_000_000_000));
                let f = outgoing_handler::handle(req, Some(options))
                    .map_err(|e| ConnectorError::Unreachable(format!("{e:?}")))?;
                loop {
                    match f.get() {
                        Some(Ok(Ok(_))) => return Ok(Disposition::Rejected("answered".into())),
                        Some(Ok(Err(e))) => return Err(ConnectorError::Unreachable(format!("{url}: {e:?}"))),
                        Some(Err(())) => return Err(ConnectorError::Internal("taken".into())),
                        None => f.subscribe().block(),
                    }
                }
            }
            "fields-bomb" => {
                let value = vec![b'v'; 120 * 1024];
                let mut kept = Vec::new();
                let mut failed = 0;
                for _ in 0..count(&args)? {
                    let fields = wasi::http::types::Fields::new();
                    if fields.append("x-a", &value).is_err() {
                        failed += 1;
                    }
                    kept.push(fields);
                }
                Ok(Disposition::Rejected(format!("kept {} header sets, {failed} appends failed", kept.len())))
            }
            "log-flood" => {
                let line = "L".repeat(4000);
                for i in 0..count(&args)? {
                    log(Level::Error, &format!("{i} {line}"));
                }
                Ok(Disposition::Rejected("logged".into()))
            }
            "post" => {
                // `size`: a body of that many bytes instead of "hello".
                let body = match args.iter().find(|p| p.name == "size") {
                    Some(p) => vec![
                        b'x';
                        p.value
                            .parse()
                            .map_err(|_| ConnectorError::Misconfigured("size must be a number".into()))?
                    ],
                    None => b"hello".to_vec(),
                };
                let r = http::post(arg(&args, "url")?, "text/plain", &body)?;
                Ok(Disposition::Rejected(String::from_utf8_lossy(&r.body).into_owned()))
            }
            "http01-flood" => {
                // Publishes `n` http-01 answers; the error of the first refused one, if any.
                for i in 0..count(&args)? {
                    if let Err(e) = challenges::publish_http01(&format!("token{i}"), "ka") {
                        return Err(ConnectorError::Internal(format!("answer {i}: {e}")));
                    }
                }
                Ok(Disposition::Rejected("all published".into()))
            }
            "publish-args" => {
                // Publishes an http-01 answer and a dns-01 value made of its arguments.
                challenges::publish_http01(arg(&args, "token")?, arg(&args, "ka")?)
                    .map_err(|e| ConnectorError::Internal(format!("http-01: {e}")))?;
                challenges::dns01_present("www.example.com", arg(&args, "txt")?)
                    .map_err(|e| ConnectorError::Internal(format!("dns-01: {e}")))?;
                Ok(Disposition::Rejected("published".into()))
            }
            "echo-secret" => Err(ConnectorError::Internal(format!("the CA refused key {}", arg(&args, "secret")?))),
            "panic" => panic!("connector bug: index out of range while parsing the CA answer"),
            other => Err(ConnectorError::Misconfigured(format!("unknown mode {other}"))),
        }
    }
}

/// The `n` parameter of the modes that repeat something.
fn count(args: &[Param]) -> Result<u64, ConnectorError> {
    arg(args, "n")?.parse().map_err(|_| ConnectorError::Misconfigured("n must be a number".into()))
}

register_connector!(Hostile);
