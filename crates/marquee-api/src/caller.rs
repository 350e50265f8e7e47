//! Who sends a request: `Authorization: Bearer <token>`, checked with the application's
//! [`Tokens`](crate::auth::Tokens). A missing, malformed, badly signed or expired token is a
//! 401 with `WWW-Authenticate: Bearer`; the problem's detail says which, without echoing the
//! token.

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use marquee_domain::UserId;

use crate::AppState;
use crate::auth::AuthError;
use crate::error::ApiError;

/// The authenticated caller of a request.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub UserId);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(authenticate(req).map_err(ApiError::Unauthorized))
    }
}

fn authenticate(req: &HttpRequest) -> Result<Caller, AuthError> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::NotBearer)?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or(AuthError::NotBearer)?;
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or(AuthError::Invalid)?;
    state.tokens.verify(token).map(Caller)
}
