//! Test data for the host's sandbox: each `mode` misbehaves in one way.
//!   loop     spin forever (the deadline must stop it)
//!   memory   allocate until the memory cap stops it
//!   trap     hit `unreachable`
//!   http     fetch the `url` parameter (the host must deny unlisted hosts)
//!   garbage  return an "issued" certificate that is not one
//!   good-log log a line and answer rejected (a well-behaved call)

use certhost_plugin_sdk::*;

struct Hostile;

impl Connector for Hostile {
    fn describe() -> Description {
        Description { name: "hostile".into(), version: "0.0.0".into(), parameters: vec![], operations: vec![] }
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
            other => Err(ConnectorError::Misconfigured(format!("unknown mode {other}"))),
        }
    }
}

register_connector!(Hostile);
