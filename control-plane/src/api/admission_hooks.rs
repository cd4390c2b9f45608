//! The admission step of the write pipeline: where the admission plugins
//! (owned by `api::admission`) see an object after defaulting and before
//! validation and storage. Called for create (no old object) and
//! update/patch, including the status and finalize subresources (with the
//! stored object), and pods/binding (the Binding, as a create of the
//! subresource); `admit_delete` before a delete, and `written` after a
//! write reached the store.

use serde_json::Value;

use super::admission::{self, Attributes, Operation};
use super::error::ApiError;
use super::handlers::Ctx;
use super::meta;

fn attributes<'a>(ctx: &'a Ctx, operation: Operation, name: &'a str) -> Attributes<'a> {
    Attributes {
        store: &ctx.state.store,
        info: ctx.info,
        operation,
        namespace: ctx.ns(),
        name,
        subresource: ctx.subresource.as_deref(),
    }
}

/// Runs the admission chain over `obj`; `old` is the stored object on update.
pub async fn admit(ctx: &Ctx, old: Option<&Value>, obj: &mut Value) -> Result<(), ApiError> {
    let name = meta::name(obj).unwrap_or("").to_string();
    let operation = if old.is_some() {
        Operation::Update
    } else {
        Operation::Create
    };
    let result = admission::admit(&attributes(ctx, operation, &name), old, obj).await;
    refused(ctx, &name, result)
}

/// Admits deleting the object `name`.
pub fn admit_delete(ctx: &Ctx, name: &str) -> Result<(), ApiError> {
    let result = admission::admit_delete(&attributes(ctx, Operation::Delete, name));
    refused(ctx, name, result)
}

fn refused(ctx: &Ctx, name: &str, result: Result<(), ApiError>) -> Result<(), ApiError> {
    if let Err(e) = &result {
        let a = &ctx.attrs;
        tracing::debug!(verb = %a.verb, resource = %a.resource, subresource = %a.subresource,
            name, error = %e, "admission refused the request");
    }
    result
}

/// Tells admission a write was stored (`old`/`new`: None when absent), unless it was a dry run.
pub async fn written(ctx: &Ctx, old: Option<&Value>, new: Option<&Value>) {
    if ctx.query.dry_run() {
        return;
    }
    admission::written(&ctx.state.store, ctx.info, ctx.ns(), old, new).await;
}
