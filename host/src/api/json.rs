//! The rules every JSON request body meets, in one pass, and the errors that say what was
//! wrong with one: a repeated key is refused rather than silently won by its last occurrence,
//! a body of the wrong shape is named by the path of the field, and no message ever quotes a
//! value (a value can be a secret). Every handler reads its JSON body through [`Body`],
//! [`optional`] or [`parse`].

use std::cell::Cell;

use axum::extract::Request;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::ApiError;

/// A JSON document as a `Value`, refusing one in which an object repeats a key (`{"params":
/// {"pin": "1", "pin": "2"}}`): serde would keep the last, so the caller's intent is a guess.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value, ApiError> {
    let repeated = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Unique(&repeated).deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match (parsed, repeated.into_inner()) {
        (Ok(v), _) => Ok(v),
        (Err(_), Some(key)) => {
            Err(ApiError::Unprocessable(format!("the request body repeats the key {key:?} in one object")))
        }
        // serde_json stops at 128 levels: valid JSON, but no request of this API nests so deep.
        (Err(e), None) if e.to_string().starts_with("recursion limit exceeded") => {
            Err(ApiError::Unprocessable("the request body nests objects or arrays more than 128 levels deep".into()))
        }
        (Err(_), None) => Err(ApiError::BadRequest("the request body is not valid JSON".into())),
    }
}

/// Builds a `Value` as serde_json does, remembering each object's keys; the first repeated
/// one lands in the cell and ends the parse.
#[derive(Clone, Copy)]
struct Unique<'a>(&'a Cell<Option<String>>);

impl<'de> DeserializeSeed<'de> for Unique<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unique<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            if out.contains_key(&key) {
                self.0.set(Some(key));
                return Err(de::Error::custom("a repeated key"));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// A JSON request body, read as certhost words its errors: another content type is 415; not
/// JSON at all is 400; JSON of the
/// wrong shape is 422 naming the field's path — a value of the wrong type included, which
/// axum's `Json` calls a syntax error for enums ("the request body is not valid JSON" for
/// `{"reason": 5}`). Taken as `Result<Body<T>, ApiError>` so that a handler checks the
/// caller's role before it answers for the body.
pub(crate) struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = json_content_type(request.headers());
        if !is_json {
            return Err(not_json());
        }
        let bytes = read_body(request, state).await?;
        let value = parse(&bytes)?;
        // Every body of this API is an object; serde would fill a struct from an array by
        // position and then say "expected struct IssueBody with 5 elements".
        if !value.is_object() {
            return Err(ApiError::Unprocessable("the request body must be a JSON object".into()));
        }
        from_value(value).map(Body).map_err(ApiError::Unprocessable)
    }
}

/// Whether the request says its body is JSON: `application/json` or `application/…+json`,
/// in UTF-8 (RFC 8259) — a body declared in another charset is not read as UTF-8 (API review
/// of stop 40: `charset=latin1` was).
pub(super) fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = value.split(';');
    let mime = parts.next().unwrap_or_default().trim();
    let (kind, subtype) = mime.split_once('/').unwrap_or((mime, ""));
    let json = kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || subtype.to_ascii_lowercase().ends_with("+json"));
    let utf8 = parts.all(|p| match p.split_once('=') {
        Some((name, v)) if name.trim().eq_ignore_ascii_case("charset") => {
            // US-ASCII is UTF-8's subset; `utf8` is a common misspelling of its name.
            ["utf-8", "utf8", "us-ascii"].iter().any(|c| v.trim().trim_matches('"').eq_ignore_ascii_case(c))
        }
        _ => true,
    });
    json && utf8
}

/// 415, as the secret PUT answers a form body: the content type is what is wrong (it was a
/// 400 here; review of stop 35).
fn not_json() -> ApiError {
    ApiError::UnsupportedMediaType("send the body as JSON in UTF-8 (content-type: application/json)".into())
}

async fn read_body<S: Send + Sync>(request: Request, state: &S) -> Result<axum::body::Bytes, ApiError> {
    use axum::extract::FromRequest;
    axum::body::Bytes::from_request(request, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::BadRequest("the request body could not be read".into())
        }
    })
}

/// The body of a request whose body may be left out (renew, deploy, approve…): read whole,
/// with whether it was declared JSON, for [`optional`] to answer for once the caller's role
/// is checked.
pub(crate) struct MaybeJson {
    is_json: bool,
    bytes: axum::body::Bytes,
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for MaybeJson {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = json_content_type(request.headers());
        Ok(MaybeJson { is_json, bytes: read_body(request, state).await? })
    }
}

/// A body of the wrong shape, described by the path of the field at fault and without the
/// input: "timeout_seconds: a value has the wrong type or form (expected u64)",
/// "params.x: not a parameter definition …", "missing field `connector`".
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let what = shape_error(e.inner());
        if path.is_empty() || path == "." { what } else { format!("{path}: {what}") }
    })
}

/// serde's message without the input: values follow "invalid type: string \"…\"",
/// "invalid value:" and "unknown variant", so those messages keep only what was expected;
/// field names stay.
fn shape_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let expected = || plain_expected(text.split(", expected ").nth(1).unwrap_or("another value"));
    if text.starts_with("invalid type") || text.starts_with("invalid value") || text.starts_with("invalid length") {
        format!("a value has the wrong type or form (expected {})", expected())
    } else if text.starts_with("unknown variant") {
        format!("a value that is not allowed here (expected {})", expected())
    } else if let Some(field) = text.strip_prefix("missing field ") {
        // "missing field `profile`" (API review of stop 36): said as a sentence of ours.
        format!("the field {field} is required")
    } else {
        text
    }
}

/// What serde says it expected, in the words of a JSON document: Rust's type names (`u64`,
/// `struct IssueBody`, `a sequence`) mean nothing to a client in another language (API review
/// of stop 36).
fn plain_expected(expected: &str) -> String {
    match expected.trim_end_matches(char::is_whitespace) {
        // serde says the same for a value out of the type's range (`at_percent: 300` for a
        // u8): "in range" covers both.
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number of zero or more, in range".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number in range".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "an array".into(),
        "a map" => "an object".into(),
        "a boolean" => "true or false".into(),
        other if other.starts_with("struct ") || other.starts_with("a map ") => "an object".into(),
        other => other.to_owned(),
    }
}

/// An optional JSON body: empty (or `null`) means the defaults; otherwise an object (serde
/// would also fill a struct from an array by position, so `[true]` read as `{"force": true}`).
/// Errors are problem+json like every other body error, values never echoed.
/// A body given must be declared JSON, as every other body must (API review of stop 40: a
/// `text/plain` body renewed a certificate); an empty one may come with any content type or
/// none (`curl -X POST`).
pub(crate) fn optional<T: serde::de::DeserializeOwned + Default>(body: &MaybeJson) -> Result<T, ApiError> {
    if body.bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    if !body.is_json {
        return Err(not_json());
    }
    let text =
        std::str::from_utf8(&body.bytes).map_err(|_| ApiError::BadRequest("the request body is not UTF-8".into()))?;
    if text.trim() == "null" {
        return Ok(T::default());
    }
    let value = parse(text.as_bytes())?;
    if !value.is_object() {
        return Err(ApiError::Unprocessable("the request body must be a JSON object (or empty)".into()));
    }
    from_value(value).map_err(ApiError::Unprocessable)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_body_nested_too_deep_is_named_as_such_not_as_invalid() {
        let deep = format!("{}{}", "[".repeat(130), "]".repeat(130));
        let err = parse(deep.as_bytes()).expect_err("too deep");
        assert_eq!(err.to_string(), "the request body nests objects or arrays more than 128 levels deep");
        let broken = parse(b"[[1,]").expect_err("invalid");
        assert_eq!(broken.to_string(), "the request body is not valid JSON");
    }

    use super::*;

    #[test]
    fn a_repeated_key_is_found_at_any_depth_and_named() {
        let detail = |json: &[u8]| parse(json).map_err(|e| e.to_string());
        assert_eq!(detail(br#"{"a": 1, "a": 2}"#), Err("the request body repeats the key \"a\" in one object".into()));
        assert!(detail(br#"{"p": [{"x": {"pin": "1", "pin": "2"}}]}"#).expect_err("nested").contains("\"pin\""));
        assert!(detail(br#"{"a\u0062": 1, "ab": 2}"#).expect_err("escapes decoded").contains("\"ab\""));
        let same = br#"{"a": {"b": [1, -2, 3.5, true, null, "x"]}, "b": {"a": 1}}"#;
        assert_eq!(detail(same), Ok(serde_json::from_slice::<Value>(same).expect("json")), "as serde_json reads it");
        assert_eq!(detail(b"{not json"), Err("the request body is not valid JSON".into()));
        assert_eq!(detail(b"{} trailing"), Err("the request body is not valid JSON".into()));
    }

    #[test]
    fn shape_errors_name_the_path_and_never_the_value() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Def {
            timeout_seconds: Option<u64>,
            params: std::collections::BTreeMap<String, crate::param::ParamSpec>,
        }
        let e = from_value::<Def>(serde_json::json!({"timeout_seconds": "S3CRET", "params": {}})).expect_err("type");
        assert!(e.starts_with("timeout_seconds: ") && !e.contains("S3CRET"), "{e}");
        let e = from_value::<Def>(serde_json::json!({"params": {"x": {"sensitive": true, "valu": "S3CRET"}}}))
            .expect_err("shape");
        assert!(e.starts_with("params.x.valu: not a parameter definition") && !e.contains("S3CRET"), "{e}");
        let e = from_value::<Def>(serde_json::json!({"params": {"x": {"sensitive": "S3CRET"}}})).expect_err("type");
        assert!(e.starts_with("params.x") && !e.contains("S3CRET"), "{e}");
        let e = from_value::<Def>(serde_json::json!({"params": {"x": ["S3CRET"]}})).expect_err("array");
        assert!(e.starts_with("params.x: an array is not a parameter definition") && !e.contains("S3CRET"), "{e}");
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        enum Reason {
            KeyCompromise,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Revoke {
            reason: Reason,
        }
        let e = from_value::<Revoke>(serde_json::json!({"reason": "S3CRET"})).expect_err("variant");
        assert!(e.starts_with("reason: ") && e.contains("KeyCompromise") && !e.contains("S3CRET"), "{e}");
        let e = from_value::<Revoke>(serde_json::json!({"reason": 5})).expect_err("type");
        assert!(e.starts_with("reason: a value has the wrong type"), "{e}");
        // In a JSON document's words, not Rust's.
        let e = from_value::<Def>(serde_json::json!({"timeout_seconds": -1, "params": {}})).expect_err("type");
        assert_eq!(
            e,
            "timeout_seconds: a value has the wrong type or form (expected a whole number of zero or more, in range)"
        );
        let e = from_value::<Def>(serde_json::json!({"timeout_seconds": 5})).expect_err("missing");
        assert_eq!(e, "the field `params` is required");
        let e = from_value::<Revoke>(serde_json::json!([])).expect_err("array");
        assert!(!e.contains("struct"), "{e}");
    }
}
