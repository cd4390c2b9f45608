//! The one place where typed errors become Kubernetes `Status` responses
//! (reason, code, details.causes), as kubectl and client libraries expect.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::store::StoreError;

/// One field-level problem of an Invalid (422) error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatusCause {
    /// e.g. "FieldValueInvalid", "FieldValueRequired", "FieldValueNotSupported".
    pub reason: String,
    pub message: String,
    /// JSON path of the field, e.g. "metadata.name" (omitted when empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field: String,
}

/// An error the API answers with; each variant maps to one Status reason and code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Unauthorized")]
    Unauthorized,
    /// `message` is the full Kubernetes sentence, e.g.
    /// `pods is forbidden: User "x" cannot list resource "pods" in API group "" in the namespace "default"`.
    #[error("{message}")]
    Forbidden {
        message: String,
        group: String,
        kind: String,
        name: String,
    },
    #[error("{kind}{} \"{name}\" not found", group_suffix(group))]
    NotFound {
        group: String,
        kind: String,
        name: String,
    },
    #[error("{kind}{} \"{name}\" already exists", group_suffix(group))]
    AlreadyExists {
        group: String,
        kind: String,
        name: String,
    },
    #[error("{message}")]
    Conflict {
        group: String,
        kind: String,
        name: String,
        message: String,
    },
    #[error("{kind} \"{name}\" is invalid: {}", causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect::<Vec<_>>().join(", "))]
    Invalid {
        group: String,
        kind: String,
        name: String,
        causes: Vec<StatusCause>,
    },
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("the request body is too large (limit {limit} bytes)")]
    RequestEntityTooLarge { limit: usize },
    /// 429; a non-zero `retry_after` becomes `details.retryAfterSeconds`
    /// and a `Retry-After` header, as kube-apiserver sends them.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: u32,
        causes: Vec<StatusCause>,
    },
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    ServiceUnavailable(String),
    #[error("{0}")]
    Internal(String),
}

fn group_suffix(group: &str) -> String {
    if group.is_empty() {
        String::new()
    } else {
        format!(".{group}")
    }
}

impl ApiError {
    /// The HTTP code and Status `reason` of this error.
    pub fn code_and_reason(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "Forbidden"),
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, "NotFound"),
            ApiError::AlreadyExists { .. } => (StatusCode::CONFLICT, "AlreadyExists"),
            ApiError::Conflict { .. } => (StatusCode::CONFLICT, "Conflict"),
            ApiError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
            ApiError::Gone(_) => (StatusCode::GONE, "Expired"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
            }
            ApiError::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "NotAcceptable"),
            ApiError::RequestEntityTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge")
            }
            ApiError::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
            ApiError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "Timeout"),
            ApiError::ServiceUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }

    /// The `Status` object (apiVersion v1) for this error.
    pub fn to_status(&self) -> serde_json::Value {
        let (code, reason) = self.code_and_reason();
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": reason,
            "code": code.as_u16(),
        });
        let details = match self {
            ApiError::NotFound { group, kind, name }
            | ApiError::AlreadyExists { group, kind, name }
            | ApiError::Conflict {
                group, kind, name, ..
            }
            | ApiError::Forbidden {
                group, kind, name, ..
            } => Some(json!({ "name": name, "group": group, "kind": kind })),
            ApiError::Invalid {
                group,
                kind,
                name,
                causes,
            } => Some(json!({ "name": name, "group": group, "kind": kind, "causes": causes })),
            ApiError::TooManyRequests {
                retry_after,
                causes,
                ..
            } => {
                let mut d = json!({});
                if *retry_after > 0 {
                    d["retryAfterSeconds"] = json!(retry_after);
                }
                if !causes.is_empty() {
                    d["causes"] = json!(causes);
                }
                Some(d)
            }
            _ => None,
        };
        if let Some(details) = details {
            status["details"] = details;
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, _) = self.code_and_reason();
        let mut response = (code, axum::Json(self.to_status())).into_response();
        if let ApiError::TooManyRequests { retry_after, .. } = &self
            && *retry_after > 0
        {
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(*retry_after),
            );
        }
        if code == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    /// Store errors without object context; handlers that know the object map
    /// Conflict/NotFound/AlreadyExists themselves to name it.
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Compacted { .. } | StoreError::WatchLagged { .. } => {
                ApiError::Gone(err.to_string())
            }
            StoreError::FutureRevision { .. } => {
                ApiError::Timeout(format!("Too large resource version: {err}"))
            }
            StoreError::Unavailable(_) | StoreError::Shutdown => {
                ApiError::ServiceUnavailable(err.to_string())
            }
            StoreError::Conflict { ref key, .. } => ApiError::Conflict {
                group: String::new(),
                kind: String::new(),
                name: key.clone(),
                message: err.to_string(),
            },
            StoreError::AlreadyExists { key } => ApiError::AlreadyExists {
                group: String::new(),
                kind: String::new(),
                name: key,
            },
            StoreError::NotFound { key } => ApiError::NotFound {
                group: String::new(),
                kind: String::new(),
                name: key,
            },
            StoreError::Storage(_) => ApiError::Internal(err.to_string()),
        }
    }
}
