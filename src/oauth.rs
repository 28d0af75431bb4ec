//! Internal users sign in with OAuth 2.0 (authorization code + PKCE, the `oauth2` crate)
//! against `[auth.oauth]`. Koji offers a single-use link to `/auth/start`; the state is bound
//! to the channel identity and its session, expires after 10 minutes, and lives in the
//! database, so `/auth/callback` may land on any replica.

use crate::conversation::Core;
use crate::domain::{AuthMethod, PersonKind, normalise_email};
use crate::store::codes::StateLookup;
use crate::store::new_token;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, TokenUrl,
};

/// An answer for the browser: status and a short plain page.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub title: &'static str,
    pub text: String,
}

fn page(status: u16, title: &'static str, text: impl Into<String>) -> Page {
    Page {
        status,
        title,
        text: text.into(),
    }
}

impl Core {
    pub fn oauth_enabled(&self) -> bool {
        self.config.auth.oauth.as_ref().is_some_and(|o| {
            o.client_id.is_some()
                && o.authorize_url.is_some()
                && o.token_url.is_some()
                && o.userinfo_url.is_some()
        })
    }

    fn redirect_uri(&self) -> String {
        format!(
            "{}/auth/callback",
            self.config.server.public_url.trim_end_matches('/')
        )
    }

    /// A single-use sign-in link for this identity and session.
    pub async fn oauth_link(
        &self,
        tenant_id: &str,
        identity_id: i64,
        session_id: i64,
    ) -> Result<String, crate::store::StoreError> {
        let state = new_token();
        let verifier = PkceCodeVerifier::new(new_token() + &new_token());
        self.store
            .create_oauth_state(
                &state,
                tenant_id,
                identity_id,
                session_id,
                verifier.secret(),
            )
            .await?;
        Ok(format!(
            "{}/auth/start?state={state}",
            self.config.server.public_url.trim_end_matches('/')
        ))
    }

    /// `GET /auth/start`: where the provider's consent page is.
    pub async fn oauth_start(&self, state: &str) -> Result<String, Page> {
        let Some(cfg) = self
            .config
            .auth
            .oauth
            .as_ref()
            .filter(|_| self.oauth_enabled())
        else {
            return Err(page(
                404,
                "Sign-in unavailable",
                "Sign-in with OAuth is not configured on this server.",
            ));
        };
        let found = match self.store.oauth_state(state, false).await {
            Ok(StateLookup::Valid(s)) => s,
            Ok(StateLookup::Expired) => {
                return Err(page(
                    400,
                    "Link expired",
                    "This sign-in link has expired. Ask Koji for a new one.",
                ));
            }
            Ok(StateLookup::Used) => {
                return Err(page(
                    400,
                    "Link used",
                    "This sign-in link was already used. Ask Koji for a new one.",
                ));
            }
            Ok(StateLookup::Unknown) => {
                return Err(page(400, "Unknown link", "This sign-in link is not valid."));
            }
            Err(_) => {
                return Err(page(
                    503,
                    "Try again",
                    "Koji cannot sign you in right now. Please try again.",
                ));
            }
        };
        let (Ok(auth), Ok(redirect)) = (
            AuthUrl::new(cfg.authorize_url.clone().unwrap_or_default()),
            RedirectUrl::new(self.redirect_uri()),
        ) else {
            return Err(page(
                500,
                "Misconfigured",
                "auth.oauth.authorize_url or server.public_url is not a URL.",
            ));
        };
        let client = BasicClient::new(ClientId::new(cfg.client_id.clone().unwrap_or_default()))
            .set_auth_uri(auth)
            .set_redirect_uri(redirect);
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(
            found.pkce_verifier,
        ));
        let state = state.to_string();
        let mut request = client
            .authorize_url(move || CsrfToken::new(state))
            .set_pkce_challenge(challenge);
        for s in &cfg.scopes {
            request = request.add_scope(Scope::new(s.clone()));
        }
        Ok(request.url().0.to_string())
    }

    /// `GET /auth/callback`: exchanges the code (with the PKCE verifier), reads the identity,
    /// links the channel identity and starts its authenticated session.
    pub async fn oauth_callback(
        &self,
        state: Option<&str>,
        code: Option<&str>,
        error: Option<&str>,
    ) -> Page {
        let Some(cfg) = self
            .config
            .auth
            .oauth
            .as_ref()
            .filter(|_| self.oauth_enabled())
        else {
            return page(
                404,
                "Sign-in unavailable",
                "Sign-in with OAuth is not configured on this server.",
            );
        };
        let Some(state) = state else {
            return page(400, "Unknown link", "The sign-in answer carries no state.");
        };
        let found = match self.store.oauth_state(state, true).await {
            Ok(StateLookup::Valid(s)) => s,
            Ok(StateLookup::Expired) => {
                return page(
                    400,
                    "Link expired",
                    "This sign-in has expired. Ask Koji for a new link.",
                );
            }
            Ok(StateLookup::Used) => {
                return page(
                    400,
                    "Already used",
                    "This sign-in was already completed or cancelled.",
                );
            }
            Ok(StateLookup::Unknown) => {
                return page(
                    400,
                    "Unknown sign-in",
                    "This sign-in is not one Koji started.",
                );
            }
            Err(_) => {
                return page(
                    503,
                    "Try again",
                    "Koji cannot sign you in right now. Please try again.",
                );
            }
        };
        if let Some(e) = error {
            let why = if e == "access_denied" {
                "You declined the sign-in."
            } else {
                "The sign-in provider refused the sign-in."
            };
            return page(
                400,
                "Not signed in",
                format!("{why} Nothing was changed; you can close this page."),
            );
        }
        let Some(code) = code else {
            return page(400, "Not signed in", "The sign-in answer carries no code.");
        };
        let (Ok(token_url), Ok(redirect)) = (
            TokenUrl::new(cfg.token_url.clone().unwrap_or_default()),
            RedirectUrl::new(self.redirect_uri()),
        ) else {
            return page(
                500,
                "Misconfigured",
                "auth.oauth.token_url or server.public_url is not a URL.",
            );
        };
        let mut client = BasicClient::new(ClientId::new(cfg.client_id.clone().unwrap_or_default()))
            .set_token_uri(token_url)
            .set_redirect_uri(redirect);
        if let Some(secret) = &cfg.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.0.clone()));
        }
        let http = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(15))
            .build()
        {
            Ok(h) => h,
            Err(_) => return page(500, "Try again", "Koji cannot reach the sign-in provider."),
        };
        let token = match client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(found.pkce_verifier.clone()))
            .request_async(&http)
            .await
        {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "oauth token exchange failed");
                return page(
                    502,
                    "Not signed in",
                    "The sign-in provider did not answer as expected. Please try again later.",
                );
            }
        };
        let userinfo = http
            .get(cfg.userinfo_url.clone().unwrap_or_default())
            .bearer_auth(token.access_token().secret())
            .send()
            .await
            .and_then(|r| r.error_for_status());
        let info: serde_json::Value = match userinfo {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "oauth userinfo failed");
                return page(
                    502,
                    "Not signed in",
                    "The sign-in provider did not say who you are. Please try again later.",
                );
            }
        };
        let Some(email) = info["email"].as_str().and_then(normalise_email) else {
            return page(
                400,
                "Not signed in",
                "The sign-in provider did not share your email address.",
            );
        };
        if self.tenant(&found.tenant_id).is_none() {
            return page(
                400,
                "Not signed in",
                "This sign-in belongs to a tenant that no longer exists.",
            );
        }
        match self
            .store
            .sign_in_verified(
                &found.tenant_id,
                found.identity_id,
                found.session_id,
                &email,
                PersonKind::Internal,
                AuthMethod::Oauth,
            )
            .await
        {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "oauth sign-in not recorded");
                return page(
                    503,
                    "Try again",
                    "Koji cannot sign you in right now. Please try again.",
                );
            }
        };
        let _ = self
            .store
            .set_conversation_state(found.identity_id, None)
            .await;
        self.forget_speakers();
        page(
            200,
            "Signed in",
            format!(
                "You're signed in as {email}. You can close this page and go back to the chat."
            ),
        )
    }
}
