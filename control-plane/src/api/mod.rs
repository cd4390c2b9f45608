//! The Kubernetes API server: REST over axum in front of the store.
//! Request pipeline: TLS → authentication (`auth`) → authorization (`auth`,
//! RBAC) → admission → store. Handlers stay thin: parse, call a domain
//! function, map the typed error to a `Status` (see `error`).

pub mod auth;
mod error;
mod request;

pub use error::{ApiError, StatusCause};
pub use request::{RequestAttributes, UserInfo};
