//! One error type for the HTTP API, rendered as RFC 9457 problem+json in one place.
//! Client mistakes are 4xx with a detail naming what was wrong; a 5xx means a real server
//! fault, whose cause is logged and never sent (it could name paths or internals).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::inventory::InventoryError;
use crate::issue::IssueError;

/// An API failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 401: no token, an unknown one, or a revoked one.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// 403: the token's role does not allow this.
    #[error("role {role} may not {action}")]
    Forbidden {
        /// The caller's role.
        role: &'static str,
        /// What was attempted.
        action: &'static str,
    },
    /// 404.
    #[error("{0} not found")]
    NotFound(String),
    /// 400: malformed request.
    #[error("{0}")]
    BadRequest(String),
    /// 413: the body is larger than the limit.
    #[error("the request body exceeds the {} KiB limit", super::BODY_LIMIT / 1024)]
    TooLarge,
    /// 405: the path exists, the method does not.
    #[error("this endpoint does not support that method")]
    MethodNotAllowed,
    /// 409: conflicts with current state.
    #[error("{0}")]
    Conflict(String),
    /// 422: well-formed but refused (policy, parameters, verification, CA refusal).
    #[error("{0}")]
    Unprocessable(String),
    /// 502: the CA or its connector failed.
    #[error("{0}")]
    Upstream(String),
    /// 500: a server fault; the cause is logged, not sent.
    #[error("internal server error")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "internal error");
        }
        let body = serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "detail": self.to_string(),
        });
        let mut resp = (status, body.to_string()).into_response();
        resp.headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    /// Malformed JSON is 400; well-formed JSON of the wrong shape is 422. serde's message
    /// names fields but may quote a value (`invalid type: string "..."`), and a value can be
    /// a secret: values are cut out, field names kept.
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as J;
        match e {
            _ if e.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge,
            J::JsonDataError(d) => ApiError::Unprocessable(without_values(&d.body_text())),
            J::JsonSyntaxError(_) => ApiError::BadRequest("the request body is not valid JSON".into()),
            J::MissingJsonContentType(_) => {
                ApiError::BadRequest("send the body as JSON (content-type: application/json)".into())
            }
            other => ApiError::BadRequest(without_values(&other.body_text())),
        }
    }
}

/// serde's message with every quoted input value replaced; field names stay.
fn without_values(text: &str) -> String {
    static VALUE: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"(invalid type: [a-z ]+|invalid value: [a-z ]+|unknown variant|invalid length) (`[^`]*`|"[^"]*"|[^,]*)"#,
        )
        .ok()
    });
    let text = text.replace("Failed to deserialize the JSON body into the target type: ", "");
    match &*VALUE {
        Some(re) => re.replace_all(&text, "$1 (value not shown)").into_owned(),
        None => "the request body does not have the expected shape".into(),
    }
}

impl From<InventoryError> for ApiError {
    fn from(e: InventoryError) -> Self {
        match e {
            InventoryError::NotFound(what) => ApiError::NotFound(what),
            InventoryError::InUse(_) | InventoryError::Conflict(_) => ApiError::Conflict(e.to_string()),
            InventoryError::BadLookup(_) | InventoryError::InvalidStatus(_) => ApiError::BadRequest(e.to_string()),
            InventoryError::Invalid(_) | InventoryError::KeyMismatch => ApiError::Unprocessable(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::Inventory(inner) => inner.into(),
            IssueError::NoProfile(name) => ApiError::NotFound(format!("profile {name}")),
            IssueError::WrongState { .. } | IssueError::Inactive { .. } | IssueError::Certificate { .. } => {
                ApiError::Conflict(e.to_string())
            }
            IssueError::Failed { .. } | IssueError::CaCall { .. } => ApiError::Upstream(e.to_string()),
            other => ApiError::Unprocessable(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rejection_messages_keep_field_names_and_drop_values() {
        let t = super::without_values(
            "Failed to deserialize the JSON body into the target type: params.pin: invalid type: string \"S3CRET\", expected u32 at line 1 column 9",
        );
        assert!(!t.contains("S3CRET") && t.contains("params.pin"), "{t}");
        let t = super::without_values("reason: unknown variant `S3CRET`, expected one of `a`, `b` at line 1");
        assert!(!t.contains("S3CRET") && t.contains("expected one of"), "{t}");
        let t = super::without_values("missing field `profile` at line 1 column 2");
        assert!(t.contains("`profile`"), "{t}");
    }
}
