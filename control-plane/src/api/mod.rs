//! The Kubernetes API server: REST over axum in front of the store.
//! Request pipeline: TLS → authentication (`auth`) → authorization (`auth`,
//! RBAC) → admission → store (Secrets encrypted at rest, `encryption`), with
//! an audit record of every request (`audit`). Handlers stay thin: parse,
//! call a domain function, map the typed error to a `Status` (see `error`).

pub mod auth;
mod error;
mod request;

mod admission;
mod admission_hooks;
mod alloc;
mod audit;
mod body;
mod bootstrap;
mod convert;
mod decoded;
mod defaults;
mod discovery;
mod encryption;
mod handlers;
mod lifecycle;
mod local;
mod meta;
mod metrics;
mod objects;
mod openapi;
mod patch;
mod path;
mod pipeline;
mod protobuf;
mod proxy;
mod query;
pub mod registry;
mod render;
mod selectors;
pub mod server;
mod state;
mod table;
mod tokens;
mod validation;
mod watch;

pub use error::{ApiError, StatusCause};
pub use local::LocalApi;
pub use request::{RequestAttributes, UserInfo};
pub use server::{ApiConfig, ApiHandle, start};
