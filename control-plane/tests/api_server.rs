//! End-to-end tests of the API server: a real store and API on
//! 127.0.0.1:0 driven by kube-rs, raw HTTP and kubectl.

#[path = "api_server/support.rs"]
mod support;

#[path = "api_server/crud.rs"]
mod crud;

#[path = "api_server/kubectl.rs"]
mod kubectl;

#[path = "api_server/watch.rs"]
mod watch;

#[path = "api_server/limits.rs"]
mod limits;

#[path = "api_server/encryption.rs"]
mod encryption;

#[path = "api_server/audit.rs"]
mod audit;

#[path = "api_server/admission.rs"]
mod admission;

#[path = "api_server/eviction.rs"]
mod eviction;

#[path = "api_server/binding.rs"]
mod binding;

#[path = "api_server/service_account_tokens.rs"]
mod service_account_tokens;
