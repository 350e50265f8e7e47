//! Identity: `Authorization: Bearer <token>`, an HS256 JWT whose `sub` is the user id.
//!
//! The secret comes from configuration and is never logged ([`Secret`]'s `Debug` hides it).
//! A missing, malformed, badly signed or expired token is a 401 with
//! `WWW-Authenticate: Bearer`; the problem's detail says which, without echoing the token.

use std::fmt;
use std::future::{Ready, ready};
use std::time::Duration;

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use marquee_domain::UserId;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::ApiError;

/// A secret that does not print.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    /// Informational; tokens from other issuers may leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
}

/// Checks tokens (and, for `marquee token`, mints them) with one secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens").finish_non_exhaustive()
    }
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the Authorization header is missing")]
    Missing,
    #[error("the Authorization header must be `Bearer <token>`")]
    NotBearer,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid")]
    Invalid,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Tokens {
    pub fn new(secret: &Secret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.expose().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
        }
    }

    /// A token for `user` valid for `ttl`.
    pub fn mint(&self, user: UserId, ttl: Duration) -> Result<String, jsonwebtoken::errors::Error> {
        let now = unix_now();
        let claims = Claims {
            sub: user.to_string(),
            iat: Some(now),
            exp: now.saturating_add(ttl.as_secs().max(1)),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The user a token names, if it is signed with our secret and not expired.
    pub fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            })?;
        data.claims.sub.parse().map_err(|_| AuthError::Invalid)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_forgeries() {
        let tokens = Tokens::new(&Secret::new("a-secret-that-is-long-enough-0123456789"));
        let user = UserId::new(42).expect("positive");
        let token = tokens.mint(user, Duration::from_secs(60)).expect("mint");
        assert_eq!(tokens.verify(&token), Ok(user));

        let other = Tokens::new(&Secret::new("another-secret-that-is-long-enough-01234"));
        assert_eq!(other.verify(&token), Err(AuthError::Invalid));
        assert_eq!(tokens.verify("not.a.token"), Err(AuthError::Invalid));
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }

    #[test]
    fn expired_tokens_are_refused() {
        let tokens = Tokens::new(&Secret::new("a-secret-that-is-long-enough-0123456789"));
        let claims = Claims {
            sub: "42".into(),
            iat: None,
            exp: 2,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &tokens.encoding)
            .expect("encode");
        assert_eq!(tokens.verify(&token), Err(AuthError::Expired));
    }
}
