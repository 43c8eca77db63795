//! An ACME (RFC 8555) client session over the SDK's wasi:http client: the directory,
//! nonces, the account, and signed requests with a retry on `badNonce`.

use certhost_plugin_sdk::http::{self, Response};
use certhost_plugin_sdk::{Level, cache_get, cache_set, log};
use serde_json::{Value, json};
use wasi::http::types::Method;

use crate::AcmeError;
use crate::jws::{AccountKey, external_account_binding};

/// The ACME error namespace.
const ERR: &str = "urn:ietf:params:acme:error:";

/// How an account is set up.
pub struct AccountParams<'a> {
    pub directory_url: &'a str,
    pub contact_email: Option<&'a str>,
    pub eab: Option<(&'a str, &'a str)>,
    pub account_key: Option<&'a str>,
}

/// One session with an ACME server, for one connector call.
pub struct Session {
    pub directory: Value,
    pub key: AccountKey,
    pub kid: Option<String>,
    nonce: Option<String>,
    /// What new-account needs, kept so an account the CA forgot can be registered again.
    registration: Option<Registration>,
}

/// The account's registration details (owned copies of [`AccountParams`]).
struct Registration {
    directory_url: String,
    contact_email: Option<String>,
    eab: Option<(String, String)>,
}

/// Fetches the directory (§7.1.1).
pub fn directory(url: &str) -> Result<Value, AcmeError> {
    let response = http::get(url).map_err(AcmeError::Http)?;
    if response.status != 200 {
        return Err(AcmeError::Directory(format!("{url} answered HTTP {}", response.status)));
    }
    let dir: Value = serde_json::from_slice(&response.body)
        .map_err(|_| AcmeError::Directory(format!("{url} did not return JSON")))?;
    for field in ["newNonce", "newAccount", "newOrder"] {
        if !dir[field].is_string() {
            return Err(AcmeError::Directory(format!("{url} has no {field}")));
        }
    }
    Ok(dir)
}

/// A response header, by case-insensitive name.
pub fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
}

/// Retry-After in whole seconds (the HTTP-date form is treated as absent).
pub fn retry_after(response: &Response) -> Option<u64> {
    header(response, "retry-after").and_then(|v| v.trim().parse().ok())
}

impl Session {
    /// Opens a session: directory, account key (parameter, or cached, or new and cached)
    /// and the cached account URL for that key.
    pub fn open(params: &AccountParams<'_>) -> Result<Self, AcmeError> {
        let directory = directory(params.directory_url)?;
        let key_cache = format!("acme:account-key:{}", params.directory_url);
        let key = match params.account_key {
            Some(pem) => AccountKey::from_pem(pem)?,
            None => match cache_get(&key_cache) {
                Some(pem) => AccountKey::from_pem(&pem)?,
                None => {
                    let key = AccountKey::generate()?;
                    // ttl 0: kept, sealed in the host's inventory, until the account's
                    // connector or parameters change, or a secret is set anew.
                    cache_set(&key_cache, &key.to_pem()?, 0);
                    log(
                        Level::Info,
                        "created a new ACME account key, kept in the host cache until this account's parameters or secrets change \
                         (set account_key to choose the key yourself)",
                    );
                    key
                }
            },
        };
        let kid = cache_get(&Self::kid_cache_key(params.directory_url, &key));
        Ok(Self { directory, key, kid, nonce: None, registration: None })
    }

    fn kid_cache_key(directory_url: &str, key: &AccountKey) -> String {
        format!("acme:kid:{directory_url}:{}", key.thumbprint())
    }

    /// The URL of a directory resource.
    pub fn url(&self, name: &str) -> Result<String, AcmeError> {
        self.directory[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| AcmeError::Directory(format!("the directory has no {name}")))
    }

    fn fresh_nonce(&mut self) -> Result<String, AcmeError> {
        if let Some(n) = self.nonce.take() {
            return Ok(n);
        }
        let url = self.url("newNonce")?;
        let response = http::request(Method::Head, &url, &[], None).map_err(AcmeError::Http)?;
        header(&response, "replay-nonce").ok_or_else(|| AcmeError::Protocol(format!("{url} gave no Replay-Nonce")))
    }

    /// A signed POST (`payload` `None` = POST-as-GET), retried on `badNonce` (§6.5).
    /// Returns the response when it is a success, the CA's problem as an error otherwise.
    pub fn post(&mut self, url: &str, payload: Option<&Value>, use_jwk: bool) -> Result<Response, AcmeError> {
        self.post_with(url, payload, use_jwk, None)
    }

    fn post_with(
        &mut self,
        url: &str,
        payload: Option<&Value>,
        use_jwk: bool,
        accept: Option<&str>,
    ) -> Result<Response, AcmeError> {
        let mut attempts = 0;
        let mut registered_again = false;
        loop {
            attempts += 1;
            let kid = if use_jwk { None } else { Some(self.kid.clone().ok_or(AcmeError::NoAccount)?) };
            let nonce = self.fresh_nonce()?;
            let body = self.key.sign(url, &nonce, kid.as_deref(), payload).to_string();
            let length = body.len().to_string();
            let mut headers: Vec<(&str, &[u8])> =
                vec![("content-type", b"application/jose+json"), ("content-length", length.as_bytes())];
            if let Some(a) = accept {
                headers.push(("accept", a.as_bytes()));
            }
            let response =
                http::request(Method::Post, url, &headers, Some(body.as_bytes())).map_err(AcmeError::Http)?;
            self.nonce = header(&response, "replay-nonce");
            if response.status < 400 {
                return Ok(response);
            }
            let problem: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
            let kind = problem["type"].as_str().unwrap_or_default().trim_start_matches(ERR).to_owned();
            if kind == "badNonce" && attempts < 4 {
                continue;
            }
            // The CA no longer knows the cached account (its database was reset, or it is a
            // test CA that restarted): register the key again, once, and resend.
            if kind == "accountDoesNotExist" && !use_jwk && !registered_again && self.registration.is_some() {
                registered_again = true;
                log(Level::Warn, "the CA no longer knows the cached ACME account; registering it again");
                self.kid = None;
                self.register()?;
                continue;
            }
            let detail = problem["detail"].as_str().unwrap_or("no detail").to_owned();
            // "(, HTTP 404)" said nothing: an answer without a problem document says so.
            let kind = if kind.is_empty() { "no problem document".to_owned() } else { kind };
            return Err(AcmeError::Problem { status: response.status, kind, detail });
        }
    }

    /// POST-as-GET of a resource, parsed as JSON.
    pub fn fetch(&mut self, url: &str) -> Result<(Value, Option<u64>), AcmeError> {
        let response = self.post(url, None, false)?;
        Ok((json_body(&response, url)?, retry_after(&response)))
    }

    /// POST-as-GET of a certificate chain (PEM).
    pub fn download(&mut self, url: &str) -> Result<String, AcmeError> {
        let response = self.post_with(url, None, false, Some("application/pem-certificate-chain"))?;
        String::from_utf8(response.body).map_err(|_| AcmeError::Protocol(format!("{url} returned a non-UTF-8 chain")))
    }

    /// Makes sure the account exists (§7.3): the cached account URL, or new-account (with
    /// external account binding when configured), whose URL is then cached.
    pub fn ensure_account(&mut self, params: &AccountParams<'_>) -> Result<(), AcmeError> {
        self.registration = Some(Registration {
            directory_url: params.directory_url.to_owned(),
            contact_email: params.contact_email.map(str::to_owned),
            eab: params.eab.map(|(kid, key)| (kid.to_owned(), key.to_owned())),
        });
        if self.kid.is_some() {
            return Ok(());
        }
        self.register()
    }

    /// Asks the CA for the account, for `test_connection`: a cached URL alone said "ok" of an
    /// account the CA had forgotten, and the next issuance found that the CA now required
    /// external account binding (ACME walkthrough of stop 46). new-account with
    /// `onlyReturnExisting` (§7.3.1, which every CA supports) finds it; one the CA no longer
    /// knows is registered again, which says what the CA requires; one it deactivated is
    /// refused by the CA, which says so.
    pub fn verify_account(&mut self) -> Result<(), AcmeError> {
        let url = self.url("newAccount")?;
        match self.post(&url, Some(&json!({ "onlyReturnExisting": true })), true) {
            Ok(response) => {
                if let Some(kid) = header(&response, "location")
                    && self.kid.as_deref() != Some(kid.as_str())
                {
                    if let Some(reg) = &self.registration {
                        cache_set(&Self::kid_cache_key(&reg.directory_url, &self.key), &kid, 0);
                    }
                    self.kid = Some(kid);
                }
                Ok(())
            }
            Err(AcmeError::Problem { kind, .. }) if kind == "accountDoesNotExist" => {
                log(Level::Warn, "the CA no longer knows the cached ACME account; registering it again");
                self.kid = None;
                self.register()
            }
            Err(e) => Err(e),
        }
    }

    /// new-account for this session's key; caches the account URL.
    fn register(&mut self) -> Result<(), AcmeError> {
        let Some(reg) = self.registration.take() else { return Err(AcmeError::NoAccount) };
        let result = self.new_account(&reg);
        self.registration = Some(reg);
        result
    }

    fn new_account(&mut self, reg: &Registration) -> Result<(), AcmeError> {
        let url = self.url("newAccount")?;
        let mut payload = json!({ "termsOfServiceAgreed": true });
        if let Some(email) = &reg.contact_email {
            payload["contact"] = json!([format!("mailto:{email}")]);
        }
        if let Some((kid, hmac_key)) = &reg.eab {
            payload["externalAccountBinding"] = external_account_binding(kid, hmac_key, &url, &self.key.jwk())?;
        }
        let response = self.post(&url, Some(&payload), true).map_err(AcmeError::account)?;
        let kid = header(&response, "location")
            .ok_or_else(|| AcmeError::Protocol("new-account gave no account URL (Location)".into()))?;
        cache_set(&Self::kid_cache_key(&reg.directory_url, &self.key), &kid, 0);
        self.kid = Some(kid);
        Ok(())
    }
}

/// A response body as JSON.
pub fn json_body(response: &Response, url: &str) -> Result<Value, AcmeError> {
    serde_json::from_slice(&response.body).map_err(|_| AcmeError::Protocol(format!("{url} did not return JSON")))
}
