//! serviceaccounts/token: TokenRequests answered with a token the security
//! layer signs for the ServiceAccount (audiences, expiry, bound object).

use serde_json::Value;

use super::error::ApiError;
use super::handlers::Ctx;

/// Issues a token for `service_account` as asked by the TokenRequest `req`.
pub async fn issue(ctx: &Ctx, service_account: &Value, req: Value) -> Result<Value, ApiError> {
    let _ = (ctx, service_account, req);
    Err(ApiError::ServiceUnavailable(
        "ServiceAccount token signing is not available yet".into(),
    ))
}
