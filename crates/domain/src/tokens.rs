//! Access tokens: HS256 JWTs that say which account and which API key a request acts for.
//!
//! The token is only half the story: [`crate::identity`] also checks, on every request, that
//! the key behind it is still usable, so a revoked key stops its tokens long before they expire.

use crate::{
    ids::{AccountId, ApiKeyId},
    time::Timestamp,
    ttl_map::TtlMap,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretSlice};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The account.
    sub: String,
    /// The API key the token was issued for.
    kid: String,
    iat: i64,
    exp: i64,
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    pub account_id: AccountId,
    pub key_id: ApiKeyId,
    pub expires_at: Timestamp,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid")]
    Invalid,
}

pub struct IssuedToken {
    pub token: String,
    pub expires_at: Timestamp,
}

/// Signs and verifies access tokens with one shared secret.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    lifetime_seconds: i64,
    /// Tokens whose signature was checked in the last minute, by their exact text: a client
    /// sends the same token on every request, and decoding and checking it is most of what
    /// authentication costs. A hit still checks the expiry; only a token that verified is kept.
    verified: TtlMap<String, TokenClaims>,
}

const VERIFIED_TTL: Duration = Duration::from_secs(60);
const VERIFIED_CAPACITY: usize = 10_000;

impl TokenIssuer {
    pub fn new(secret: &SecretSlice<u8>, lifetime_seconds: i64) -> Self {
        let bytes = secret.expose_secret();
        let mut validation = Validation::new(Algorithm::HS256);
        // Exactly HS256: `alg: none` and every other algorithm are refused by construction.
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
            lifetime_seconds,
            verified: TtlMap::new(VERIFIED_TTL, VERIFIED_CAPACITY),
        }
    }

    pub fn issue(&self, account: &AccountId, key: &ApiKeyId, now: Timestamp) -> IssuedToken {
        let expires_at = now.plus_seconds(self.lifetime_seconds);
        let claims = Claims {
            sub: account.to_string(),
            kid: key.to_string(),
            iat: now.as_millis() / 1000,
            exp: expires_at.as_millis() / 1000,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_else(|_| unreachable!("HS256 signing of plain claims cannot fail"));
        IssuedToken {
            token,
            // Report the instant the token really stops working (JWT `exp` has seconds).
            expires_at: Timestamp::from_millis(claims.exp * 1000),
        }
    }

    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        self.verify_at(token, Timestamp::now())
    }

    /// [`verify`](Self::verify), with `now` deciding whether a token verified before has
    /// expired since (the signature check itself reads the system clock).
    fn verify_at(&self, token: &str, now: Timestamp) -> Result<TokenClaims, TokenError> {
        if let Some(claims) = self.verified.get(token) {
            // As the signature check decides it: `exp` (whole seconds) before now, no leeway.
            return if claims.expires_at.as_millis() / 1000 < now.as_millis() / 1000 {
                Err(TokenError::Expired)
            } else {
                Ok(claims)
            };
        }
        let claims = self.decode(token)?;
        self.verified.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }

    fn decode(&self, token: &str) -> Result<TokenClaims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?;
        Ok(TokenClaims {
            account_id: AccountId::from_string(data.claims.sub),
            key_id: ApiKeyId::from_string(data.claims.kid),
            expires_at: Timestamp::from_millis(data.claims.exp * 1000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn issuer(secret: &[u8]) -> TokenIssuer {
        TokenIssuer::new(&SecretSlice::from(secret.to_vec()), 3600)
    }

    #[test]
    fn a_token_round_trips_its_claims() {
        let issuer = issuer(b"0123456789abcdef0123456789abcdef");
        let (account, key) = (AccountId::generate(), ApiKeyId::generate());
        let issued = issuer.issue(&account, &key, Timestamp::now());
        let claims = issuer.verify(&issued.token).expect("valid");
        assert_eq!(claims.account_id, account);
        assert_eq!(claims.key_id, key);
        assert_eq!(claims.expires_at, issued.expires_at);
    }

    #[test]
    fn a_token_signed_with_another_secret_is_invalid() {
        let issued = issuer(b"one secret one secret one secret").issue(
            &AccountId::generate(),
            &ApiKeyId::generate(),
            Timestamp::now(),
        );
        let other = issuer(b"another secret another secret!!!");
        assert_eq!(other.verify(&issued.token), Err(TokenError::Invalid));
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let issuer = issuer(b"0123456789abcdef0123456789abcdef");
        let long_ago = Timestamp::now().plus_days(-2);
        let issued = issuer.issue(&AccountId::generate(), &ApiKeyId::generate(), long_ago);
        assert_eq!(issuer.verify(&issued.token), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_verified_before_is_trusted_by_its_exact_text_until_it_expires() {
        let issuer = issuer(b"0123456789abcdef0123456789abcdef");
        let issued = issuer.issue(
            &AccountId::generate(),
            &ApiKeyId::generate(),
            Timestamp::now(),
        );
        let first = issuer.verify(&issued.token).expect("valid");
        assert_eq!(issuer.verify(&issued.token), Ok(first.clone()));
        // One changed character is another text: checked in full, and refused.
        let at = issued.token.len() - 10;
        let swapped = if &issued.token[at..=at] == "A" {
            "B"
        } else {
            "A"
        };
        let tampered = format!(
            "{}{swapped}{}",
            &issued.token[..at],
            &issued.token[at + 1..]
        );
        assert_eq!(issuer.verify(&tampered), Err(TokenError::Invalid));
        // Known, but past its expiry.
        let later = issued.expires_at.plus_seconds(1);
        assert_eq!(
            issuer.verify_at(&issued.token, later),
            Err(TokenError::Expired)
        );
        assert_eq!(
            issuer.verify_at(&issued.token, issued.expires_at),
            Ok(first)
        );
        // Refused tokens are never kept.
        assert_eq!(issuer.verify(&tampered), Err(TokenError::Invalid));
    }

    #[test]
    fn an_unsigned_alg_none_token_is_refused() {
        let issuer = issuer(b"0123456789abcdef0123456789abcdef");
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let exp = Timestamp::now().plus_seconds(600).as_millis() / 1000;
        let body =
            b64(format!(r#"{{"sub":"acc_x","kid":"key_x","iat":0,"exp":{exp}}}"#).as_bytes());
        for token in [format!("{header}.{body}."), format!("{header}.{body}")] {
            assert_eq!(issuer.verify(&token), Err(TokenError::Invalid));
        }
        assert_eq!(issuer.verify("not-a-jwt"), Err(TokenError::Invalid));
    }
}
