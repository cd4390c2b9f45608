//! Review kinds that are answered, never stored (SelfSubjectAccessReview,
//! SubjectAccessReview, SelfSubjectRulesReview, SelfSubjectReview,
//! TokenReview): the body goes to `auth::review`, the answer is 201.

use axum::body::Body;
use axum::response::Response;
use http::{Method, StatusCode};

use super::{Ctx, read_object};
use crate::api::auth::review;
use crate::api::body;
use crate::api::error::ApiError;

/// POST of a review kind.
pub async fn handle(ctx: Ctx, body: Body) -> Result<Response, ApiError> {
    if ctx.method != Method::POST || ctx.name.is_some() {
        return Err(ApiError::MethodNotAllowed(format!(
            "only create is allowed on {}",
            ctx.info.plural
        )));
    }
    let obj = read_object(&ctx, body).await?;
    let state = &ctx.state;
    let answer = match ctx.info.kind {
        "SelfSubjectAccessReview" => {
            review::self_subject_access_review(&state.authorizer, &ctx.user, obj).await?
        }
        "SubjectAccessReview" => review::subject_access_review(&state.authorizer, obj).await?,
        "SelfSubjectRulesReview" => {
            review::self_subject_rules_review(&state.authorizer, &ctx.user, obj)?
        }
        "SelfSubjectReview" => review::self_subject_review(&ctx.user),
        "TokenReview" => review::token_review(&state.authenticator, obj).await?,
        other => {
            return Err(ApiError::MethodNotAllowed(format!(
                "{other} cannot be created"
            )));
        }
    };
    Ok(body::json_response(StatusCode::CREATED, &answer))
}
