//! Bot Framework request authentication: the `Authorization: Bearer <JWT>` on every activity.
//!
//! Keys come from the OpenID metadata (`teams.openid_metadata_url` → `jwks_uri`). Checks:
//! RS256 with a published key (whose `endorsements`, when present, include the activity's
//! `channelId`); `iss` = `https://api.botframework.com`; `aud` = the bot's app id; `nbf`/`exp`
//! with 5 minutes' skew; the claim `serviceurl` equals the activity's `serviceUrl`. Keys are
//! refreshed daily, and at once (at most every 30 s) when a token names an unknown `kid`.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

pub const DEFAULT_OPENID_METADATA_URL: &str =
    "https://login.botframework.com/v1/.well-known/openidconfiguration";
pub const ISSUER: &str = "https://api.botframework.com";
const KEYS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("no published key {0:?} signs this token")]
    UnknownKey(Option<String>),
    #[error("the signing key is not endorsed for channel {0}")]
    NotEndorsed(String),
    #[error("the token is for another service URL")]
    ServiceUrl,
    /// The key set could not be fetched: not the caller's fault.
    #[error("the Bot Framework keys are unavailable: {0}")]
    KeysUnavailable(String),
}

struct Key {
    key: DecodingKey,
    endorsements: Option<Vec<String>>,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, std::sync::Arc<Key>>,
    fetched: Option<Instant>,
    last_attempt: Option<Instant>,
}

pub struct Verifier {
    http: reqwest::Client,
    metadata_url: String,
    app_id: String,
    keys: Mutex<Keys>,
}

#[derive(Deserialize)]
struct Claims {
    serviceurl: Option<String>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: Option<String>,
    kty: Option<String>,
    n: Option<String>,
    e: Option<String>,
    endorsements: Option<Vec<String>>,
}

impl Verifier {
    pub fn new(http: reqwest::Client, metadata_url: String, app_id: String) -> Verifier {
        Verifier {
            http,
            metadata_url,
            app_id,
            keys: Mutex::new(Keys::default()),
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, std::sync::Arc<Key>>, String> {
        let meta: serde_json::Value = self
            .http
            .get(&self.metadata_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("openid metadata: {e}"))?
            .json()
            .await
            .map_err(|e| format!("openid metadata: {e}"))?;
        let jwks_uri = meta["jwks_uri"]
            .as_str()
            .ok_or("openid metadata has no jwks_uri")?;
        let set: Jwks = self
            .http
            .get(jwks_uri)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("key set: {e}"))?
            .json()
            .await
            .map_err(|e| format!("key set: {e}"))?;
        let mut out = HashMap::new();
        for k in set.keys {
            let (Some(kid), Some(n), Some(e)) = (k.kid, k.n, k.e) else {
                continue;
            };
            if k.kty.as_deref().is_some_and(|t| t != "RSA") {
                continue;
            }
            match DecodingKey::from_rsa_components(&n, &e) {
                Ok(key) => {
                    out.insert(
                        kid,
                        std::sync::Arc::new(Key {
                            key,
                            endorsements: k.endorsements,
                        }),
                    );
                }
                Err(err) => tracing::warn!(kid, error = %err, "unusable Bot Framework key"),
            }
        }
        Ok(out)
    }

    /// The key for `kid`, refreshing the set when it is old or does not know the kid.
    async fn key(&self, kid: &Option<String>) -> Result<std::sync::Arc<Key>, AuthError> {
        let mut keys = self.keys.lock().await;
        let stale = keys.fetched.is_none_or(|t| t.elapsed() > KEYS_MAX_AGE);
        let known = kid.as_ref().and_then(|k| keys.by_kid.get(k).cloned());
        let may_retry = keys
            .last_attempt
            .is_none_or(|t| t.elapsed() > UNKNOWN_KID_REFRESH);
        if stale || (known.is_none() && may_retry) {
            keys.last_attempt = Some(Instant::now());
            match self.fetch().await {
                Ok(set) => {
                    keys.by_kid = set;
                    keys.fetched = Some(Instant::now());
                }
                Err(e) if keys.by_kid.is_empty() => return Err(AuthError::KeysUnavailable(e)),
                Err(e) => tracing::warn!(error = %e, "Bot Framework keys not refreshed"),
            }
        }
        kid.as_ref()
            .and_then(|k| keys.by_kid.get(k).cloned())
            .ok_or_else(|| AuthError::UnknownKey(kid.clone()))
    }

    /// Checks an `Authorization` header value against the activity it came with.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        channel_id: &str,
        service_url: &str,
    ) -> Result<(), AuthError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Invalid(format!("algorithm {:?}", header.alg)));
        }
        let key = self.key(&header.kid).await?;
        if let Some(endorsed) = &key.endorsements
            && !endorsed.iter().any(|c| c == channel_id)
        {
            return Err(AuthError::NotEndorsed(channel_id.to_string()));
        }
        let mut v = Validation::new(Algorithm::RS256);
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[&self.app_id]);
        v.leeway = 300;
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &v)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        match data.claims.serviceurl {
            Some(s) if same(&s, service_url) => Ok(()),
            _ => Err(AuthError::ServiceUrl),
        }
    }
}
