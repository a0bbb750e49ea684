//! Login and logout.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use ferry_shared::api::{Account, ErrorBody, LoginRequest, LoginResponse};

use super::AppState;
use super::blocking;
use super::body::JsonBody;
use crate::error::{Error, Result};
use crate::passwords;

/// Log in: returns a bearer token for this device.
#[utoipa::path(post, path = "/auth/login", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse),
        (status = 400, body = ErrorBody, description = "empty or over-long `device_name` or `username`"),
        (status = 401, body = ErrorBody, description = "wrong user name or password"),
        (status = 429, body = ErrorBody, description = "too many failed logins for this name",
            headers(("Retry-After" = u64, description = "seconds to wait")))))]
pub async fn login(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Json<LoginResponse>> {
    if req.device_name.trim().is_empty() || req.device_name.chars().count() > 200 {
        return Err(Error::bad_request("device_name must be 1 to 200 characters, not only spaces"));
    }
    let device = req.device_name.trim().to_owned();
    let signed = sign_in(&state, req.username, req.password, device).await?;
    Ok(Json(LoginResponse { token: signed.token, user_id: signed.user_id, device_id: signed.device_id }))
}

/// A new token for `device`, if the password is right.
pub(super) struct SignedIn {
    pub token: String,
    pub user_id: i64,
    pub device_id: i64,
}

/// Checks a password and makes a token, throttled per user name (see
/// `crate::limit`); shared by the API's login and the browser's.
pub(super) async fn sign_in(state: &AppState, username: String, password: String, device: String) -> Result<SignedIn> {
    if username.chars().count() > 200 {
        return Err(Error::bad_request("username must be at most 200 characters"));
    }
    let attempt = state
        .logins
        .begin(&username, std::time::Instant::now())
        .map_err(|wait| Error::RateLimited { retry_after: wait })?;
    let meta = Arc::clone(&state.meta);
    let result = blocking(move || {
        let user = meta.password_hash(&username)?;
        if !passwords::verify_password(&password, user.as_ref().map(|(_, h)| h.as_str())) {
            return Err(Error::client(ferry_shared::api::ErrorCode::Unauthorized, "wrong user name or password"));
        }
        let (user_id, _) = user.expect("verified");
        let token = passwords::new_token();
        let device_id = meta.create_token(user_id, &device, passwords::token_hash(&token))?;
        tracing::info!(user_id, device_id, device, "login");
        Ok(SignedIn { token, user_id, device_id })
    })
    .await;
    attempt.finish(result.is_ok());
    result
}

/// Log out: revokes the token used for this request.
#[utoipa::path(post, path = "/auth/logout", responses((status = 204, description = "the token is revoked")),
    security(("bearer" = [])))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<StatusCode> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(Error::unauthorized)?;
    let hash = passwords::token_hash(token);
    let meta = Arc::clone(&state.meta);
    blocking(move || {
        if meta.authenticate(hash)?.is_none() {
            return Err(Error::unauthorized());
        }
        meta.revoke_token(hash)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's account: storage used and the quota.
#[utoipa::path(get, path = "/account", responses((status = 200, body = Account)), security(("bearer" = [])))]
pub async fn account(State(state): State<AppState>, super::Auth(caller): super::Auth) -> Result<Json<Account>> {
    let meta = Arc::clone(&state.meta);
    let user = blocking(move || meta.user_info(caller.user_id)).await?;
    Ok(Json(Account { user: user.name, used: user.used, quota: user.quota }))
}
