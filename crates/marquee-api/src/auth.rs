//! Identity: bearer tokens, HS256 JWTs whose `sub` is the user id, checked (and, for
//! `marquee token`, minted) by [`Tokens`]. [`crate::caller::Caller`] reads them from requests.
//!
//! The secret comes from configuration as a [`SecretString`]: its `Debug` output is redacted,
//! it is read only through [`ExposeSecret::expose_secret`], and it is zeroed when dropped.
//! Each way a token can fail is an [`AuthError`], whose message says which without echoing
//! the token.
//!
//! Every time claim is checked, without leeway: `exp` must be in the future, `nbf` (when
//! present) in the past, and the token may not outlive [`TokenRules::max_lifetime`] (`exp`
//! at most that far from `iat` and from now), so that a leaked or self-minted token with a
//! ten-year `exp` is useless. `iss` and `aud` are required and checked when configured.

use std::fmt;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use marquee_domain::UserId;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    /// When the token was issued; tokens from other issuers may leave it out, and then only
    /// the time left before `exp` is held against the lifetime cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    /// Not valid before; checked by the decoder when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<Audience>,
}

/// `aud`: one audience, or several (RFC 7519 allows both). The decoder checks it against
/// the configured audience; this type only has to read either form.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRules {
    /// The longest a token may be valid for: `exp - iat`, and `exp - now`.
    pub max_lifetime: Duration,
    /// When set, tokens must carry this `iss`, and minted ones do.
    pub issuer: Option<String>,
    /// When set, tokens must carry this `aud`, and minted ones do.
    pub audience: Option<String>,
}

impl Default for TokenRules {
    fn default() -> Self {
        Self {
            max_lifetime: Duration::from_secs(24 * 3600),
            issuer: None,
            audience: None,
        }
    }
}

/// Checks tokens (and, for `marquee token`, mints them) with one secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    rules: TokenRules,
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
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is valid for longer than the {max:?} allowed")]
    LifetimeTooLong { max: Duration },
    #[error("the token is not valid")]
    Invalid,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("a token may be valid for at most {max:?} (auth.max_token_lifetime), not {asked:?}")]
    LifetimeTooLong { asked: Duration, max: Duration },
    #[error("cannot sign the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

impl Tokens {
    pub fn new(secret: &SecretString, rules: TokenRules) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &rules.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = &rules.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        Self {
            encoding: EncodingKey::from_secret(secret.expose_secret().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            validation,
            rules,
        }
    }

    /// A token for `user` valid for `ttl` (at least a second), which may not exceed the
    /// lifetime cap.
    pub fn mint(&self, user: UserId, ttl: Duration) -> Result<String, MintError> {
        let ttl = ttl.max(Duration::from_secs(1));
        if ttl > self.rules.max_lifetime {
            return Err(MintError::LifetimeTooLong {
                asked: ttl,
                max: self.rules.max_lifetime,
            });
        }
        let now = unix_now();
        let claims = Claims {
            sub: user.to_string(),
            iat: Some(now),
            exp: now.saturating_add(ttl.as_secs()),
            nbf: None,
            iss: self.rules.issuer.clone(),
            aud: self.rules.audience.clone().map(Audience::One),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// The user a token names, if it is signed with our secret and every claim holds.
    pub fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                _ => AuthError::Invalid,
            })?
            .claims;
        // Both bounds: `exp - iat` is the lifetime the issuer gave it, and `exp - now` the
        // part left, which also catches a token without `iat` or with a made-up future one.
        let max = self.rules.max_lifetime.as_secs();
        let issued_for = claims.iat.map_or(0, |iat| claims.exp.saturating_sub(iat));
        if issued_for > max || claims.exp.saturating_sub(unix_now()) > max {
            return Err(AuthError::LifetimeTooLong {
                max: self.rules.max_lifetime,
            });
        }
        claims.sub.parse().map_err(|_| AuthError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-secret-that-is-long-enough-0123456789";

    fn tokens(rules: TokenRules) -> Tokens {
        Tokens::new(&SecretString::from(SECRET), rules)
    }

    /// A token with hand-set claims, signed with the right secret.
    fn signed(tokens: &Tokens, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &tokens.encoding)
            .expect("encode")
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "42".into(),
            exp,
            iat: None,
            nbf: None,
            iss: None,
            aud: None,
        }
    }

    #[test]
    fn round_trips_and_refuses_forgeries() {
        let tokens = tokens(TokenRules::default());
        let user = UserId::new(42).expect("positive");
        let token = tokens.mint(user, Duration::from_secs(60)).expect("mint");
        assert_eq!(tokens.verify(&token), Ok(user));

        let other = Tokens::new(
            &SecretString::from("another-secret-that-is-long-enough-01234"),
            TokenRules::default(),
        );
        assert_eq!(other.verify(&token), Err(AuthError::Invalid));
        assert_eq!(tokens.verify("not.a.token"), Err(AuthError::Invalid));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let tokens = tokens(TokenRules::default());
        assert_eq!(
            tokens.verify(&signed(&tokens, &claims(2))),
            Err(AuthError::Expired)
        );
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        let tokens = tokens(TokenRules::default());
        let now = unix_now();
        let early = Claims {
            nbf: Some(now + 600),
            ..claims(now + 3600)
        };
        assert_eq!(
            tokens.verify(&signed(&tokens, &early)),
            Err(AuthError::NotYetValid)
        );
        let due = Claims {
            nbf: Some(now - 1),
            ..claims(now + 3600)
        };
        assert!(tokens.verify(&signed(&tokens, &due)).is_ok());
    }

    #[test]
    fn lifetimes_beyond_the_cap_are_refused_and_not_minted() {
        let tokens = tokens(TokenRules {
            max_lifetime: Duration::from_secs(3600),
            ..TokenRules::default()
        });
        let now = unix_now();
        let too_long = AuthError::LifetimeTooLong {
            max: Duration::from_secs(3600),
        };
        // Ten years ahead, with or without iat.
        let far = claims(now + 10 * 365 * 24 * 3600);
        assert_eq!(tokens.verify(&signed(&tokens, &far)), Err(too_long.clone()));
        let issued_long = Claims {
            iat: Some(now - 3000),
            ..claims(now + 1000)
        };
        assert_eq!(
            tokens.verify(&signed(&tokens, &issued_long)),
            Err(too_long.clone()),
            "exp - iat is 4000 s"
        );
        // A made-up future iat cannot stretch the time left.
        let future_iat = Claims {
            iat: Some(now + 7200),
            ..claims(now + 7300)
        };
        assert_eq!(tokens.verify(&signed(&tokens, &future_iat)), Err(too_long));
        let fine = Claims {
            iat: Some(now),
            ..claims(now + 3600)
        };
        assert!(tokens.verify(&signed(&tokens, &fine)).is_ok());

        let user = UserId::new(7).expect("positive");
        assert!(matches!(
            tokens.mint(user, Duration::from_secs(3601)),
            Err(MintError::LifetimeTooLong { .. })
        ));
        assert!(tokens.mint(user, Duration::from_secs(3600)).is_ok());
    }

    #[test]
    fn issuer_and_audience_are_required_when_configured() {
        let strict = tokens(TokenRules {
            issuer: Some("https://id.example".into()),
            audience: Some("marquee".into()),
            ..TokenRules::default()
        });
        let user = UserId::new(42).expect("positive");
        let minted = strict.mint(user, Duration::from_secs(60)).expect("mint");
        assert_eq!(strict.verify(&minted), Ok(user), "minted tokens carry both");

        let exp = unix_now() + 600;
        let with = |iss: &str, aud: &str| Claims {
            iss: Some(iss.into()),
            aud: Some(Audience::One(aud.into())),
            ..claims(exp)
        };
        for refused in [
            claims(exp),
            with("https://evil.example", "marquee"),
            with("https://id.example", "another-service"),
        ] {
            assert_eq!(
                strict.verify(&signed(&strict, &refused)),
                Err(AuthError::Invalid),
                "{refused:?}"
            );
        }
        assert_eq!(
            strict.verify(&signed(&strict, &with("https://id.example", "marquee"))),
            Ok(user)
        );
        // Several audiences, ours among them.
        let shared = Claims {
            iss: Some("https://id.example".into()),
            aud: Some(Audience::Many(vec![
                "another-service".into(),
                "marquee".into(),
            ])),
            ..claims(exp)
        };
        assert_eq!(strict.verify(&signed(&strict, &shared)), Ok(user));
        // Unconfigured, neither is required.
        let lax = tokens(TokenRules::default());
        assert!(lax.verify(&signed(&lax, &claims(exp))).is_ok());
    }
}
