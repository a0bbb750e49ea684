//! Login and logout.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use ferry_shared::api::{Account, ErrorBody, LoginRequest, LoginResponse};

use super::blocking;
use super::body::JsonBody;
use super::{AppState, ClientIp};
use crate::error::{Error, Result};
use crate::passwords;

/// Log in: returns a bearer token for this device.
#[utoipa::path(post, path = "/auth/login", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse),
        (status = 400, body = ErrorBody, description = "empty or over-long `device_name` or `username`"),
        (status = 401, body = ErrorBody, description = "wrong user name or password"),
        (status = 429, body = ErrorBody, description = "too many failed logins for this name or from this address, \
            or too many logins being checked at once",
            headers(("Retry-After" = u64, description = "seconds to wait")))))]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    JsonBody(req): JsonBody<LoginRequest>,
) -> Result<Json<LoginResponse>> {
    if req.device_name.trim().is_empty() || req.device_name.chars().count() > 200 {
        return Err(Error::bad_request("device_name must be 1 to 200 characters, not only spaces"));
    }
    let device = req.device_name.trim().to_owned();
    let signed = sign_in(&state, ip, req.username, req.password, device).await?;
    Ok(Json(LoginResponse { token: signed.token, user_id: signed.user_id, device_id: signed.device_id }))
}

/// A new token for `device`, if the password is right.
pub(super) struct SignedIn {
    pub token: String,
    pub user_id: i64,
    pub device_id: i64,
}

/// Checks a password and makes a token, throttled per name and address,
/// per address and per name (see `crate::limit`), the check itself bounded
/// (see `crate::passwords`); shared by the API's login and the browser's.
pub(super) async fn sign_in(
    state: &AppState,
    ip: Option<std::net::IpAddr>,
    username: String,
    password: String,
    device: String,
) -> Result<SignedIn> {
    if username.chars().count() > 200 {
        return Err(Error::bad_request("username must be at most 200 characters"));
    }
    let attempt = state
        .logins
        .begin(&username, ip, std::time::Instant::now())
        .map_err(|wait| Error::RateLimited { retry_after: wait })?;
    let meta = Arc::clone(&state.stores.meta);
    let name = username.clone();
    let user = blocking(move || meta.password_hash(&name)).await?;
    let (user_id, hash) = user.map_or((None, None), |(id, h)| (Some(id), Some(h)));
    let ok = match passwords::work().verify(password, hash).await {
        Ok(ok) => ok,
        Err(busy) => {
            // Not checked: neither a failure nor a success.
            attempt.cancel();
            return Err(Error::busy(busy.to_string()));
        }
    };
    attempt.finish(ok);
    let user_id = user_id
        .filter(|_| ok)
        .ok_or_else(|| Error::client(ferry_shared::api::ErrorCode::Unauthorized, "wrong user name or password"))?;
    let meta = Arc::clone(&state.stores.meta);
    blocking(move || {
        let token = passwords::new_token();
        let device_id = meta.create_token(user_id, &device, passwords::token_hash(&token))?;
        tracing::info!(%user_id, %device_id, device, "login");
        Ok(SignedIn { token, user_id: user_id.0, device_id: device_id.0 })
    })
    .await
}

/// Log out: revokes the token used for this request.
#[utoipa::path(post, path = "/auth/logout", responses((status = 204, description = "the token is revoked")),
    security(("bearer" = [])))]
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<StatusCode> {
    let token = super::bearer_of(&headers).ok_or_else(Error::unauthorized)?;
    let hash = passwords::token_hash(token);
    let meta = Arc::clone(&state.stores.meta);
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
    let meta = Arc::clone(&state.stores.meta);
    let user = blocking(move || meta.user_info(caller.user_id)).await?;
    Ok(Json(Account { user: user.name, used: user.used, quota: user.quota }))
}
