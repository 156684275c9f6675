//! Login, `me` and bearer authentication, end to end over HTTP on both databases.

use crate::support::TestApp;
use serde_json::json;
use std::time::{Duration, Instant};
use taxbridge_domain::{
    accounts::AccountStore,
    api_keys::{self, ApiKey, ApiKeyStore, KeyKind},
    identity::{Identity, IdentitySettings},
    ids::{AccountId, ApiKeyId},
    time::Timestamp,
};

taxbridge_testkit::per_database!(
    crate::support::TestApp::spawn;
    login_returns_a_bearer_token_that_me_accepts,
    login_rejects_wrong_expired_and_revoked_keys_with_one_message,
    me_refuses_missing_malformed_forged_and_expired_tokens,
    a_revoked_keys_tokens_stop_at_once_on_the_revoking_node,
    a_key_revoked_by_another_process_stops_within_the_promised_seconds,
    a_key_that_expires_stops_its_tokens,
    a_disabled_accounts_tokens_stop,
    login_records_when_a_key_was_last_used,
    partners_log_in_with_their_partner_key,
);

async fn login_returns_a_bearer_token_that_me_accepts(app: TestApp) {
    let (account_id, secret, _) = app.customer_with_key("jane@smith-cpa.com").await;
    let login = app.login(&secret).await;
    let result = &login.assert_ok()["loginViaPersonalApiToken"];
    assert_eq!(result["tokenType"], "Bearer");
    let expires =
        Timestamp::parse_rfc3339(result["expiresAt"].as_str().expect("expiresAt")).expect("a Date");
    let in_an_hour = Timestamp::now().plus_seconds(3600).as_millis();
    assert!(
        (expires.as_millis() - in_an_hour).abs() < 5_000,
        "expires {expires}"
    );
    let token = result["accessToken"].as_str().expect("token");
    assert!(token.starts_with("eyJ"), "a JWT: {token}");

    let me = app.me(Some(token)).await;
    assert_eq!(
        me.assert_ok()["me"],
        json!({ "id": account_id, "name": "Jane Doe", "email": "jane@smith-cpa.com", "accountType": "customer" })
    );
}

async fn login_rejects_wrong_expired_and_revoked_keys_with_one_message(app: TestApp) {
    let (account_id, revoked_secret, revoked_id) =
        app.customer_with_key("jane@smith-cpa.com").await;
    app.identity
        .revoke_key(
            &ApiKeyId::from_string(revoked_id),
            &taxbridge_domain::audit::Who::operator(),
        )
        .await
        .expect("revoke");

    let expired = api_keys::generate(KeyKind::Personal);
    let past = Timestamp::now().plus_days(-2);
    app.store
        .insert_api_key(
            &ApiKey {
                id: ApiKeyId::generate(),
                account_id: AccountId::from_string(account_id),
                name: "old".into(),
                kind: KeyKind::Personal,
                hash: expired.hash,
                display_prefix: expired.display_prefix,
                created_at: past,
                last_used_at: None,
                expires_at: Some(past.plus_days(1)),
                revoked_at: None,
            },
            &taxbridge_domain::audit::AuditEvent::by_system(
                taxbridge_domain::audit::Action::ApiKeyCreated,
            ),
        )
        .await
        .expect("expired key");
    let well_formed_unknown = api_keys::generate(KeyKind::Personal);

    let mut messages = Vec::new();
    for key in [
        "your-api-key-here",
        "",
        secrecy::ExposeSecret::expose_secret(&well_formed_unknown.secret),
        &revoked_secret,
        secrecy::ExposeSecret::expose_secret(&expired.secret),
    ] {
        let response = app.login(key).await;
        assert_eq!(
            response.code(),
            "UNAUTHENTICATED",
            "{key}: {}",
            response.body
        );
        assert_eq!(response.data(), &serde_json::Value::Null);
        messages.push(response.message().to_owned());
    }
    messages.dedup();
    assert_eq!(
        messages.len(),
        1,
        "one message for every refusal: {messages:?}"
    );
    assert!(
        !messages[0].contains("revoked key") && messages[0].contains("API key"),
        "{}",
        messages[0]
    );
}

async fn me_refuses_missing_malformed_forged_and_expired_tokens(app: TestApp) {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let (account_id, secret, key_id) = app.customer_with_key("jane@smith-cpa.com").await;
    let good = app.token_for(&secret).await;
    let (header, rest) = good.split_once('.').expect("jwt");
    let (claims, _) = rest.split_once('.').expect("jwt");

    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{claims}.");
    let resigned_elsewhere = {
        let other = Identity::new(
            app.store.clone(),
            &secrecy::SecretSlice::from(b"another-secret-another-secret-32".to_vec()),
            IdentitySettings::default(),
        );
        let (issued, _) = other.login(&secret).await.expect("login elsewhere");
        issued.token
    };
    let tampered_claims = URL_SAFE_NO_PAD.encode(
        format!(r#"{{"sub":"{account_id}","kid":"{key_id}","iat":0,"exp":9999999999}}"#).as_bytes(),
    );
    let tampered = format!(
        "{header}.{tampered_claims}.{}",
        good.rsplit('.').next().expect("sig")
    );
    let expired = {
        use jsonwebtoken::{encode, EncodingKey, Header};
        let claims = json!({ "sub": account_id, "kid": key_id, "iat": 1, "exp": 2 });
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(crate::support::SIGNING_SECRET),
        )
        .expect("sign")
    };

    let missing = app.me(None).await;
    assert_eq!(missing.code(), "UNAUTHENTICATED");
    assert!(
        missing.message().contains("Authorization: Bearer"),
        "{}",
        missing.message()
    );
    for token in [
        "",
        "garbage",
        "a.b.c",
        &alg_none,
        &resigned_elsewhere,
        &tampered,
        &expired,
    ] {
        let response = app.me(Some(token)).await;
        assert_eq!(
            response.code(),
            "UNAUTHENTICATED",
            "{token}: {}",
            response.body
        );
        assert_eq!(response.status, 200);
    }
    let expired_response = app.me(Some(&expired)).await;
    assert!(
        expired_response.message().contains("expired"),
        "{}",
        expired_response.message()
    );

    // A scheme other than Bearer is no token at all.
    let basic = app
        .http
        .post(&app.endpoint)
        .header("Authorization", format!("Basic {good}"))
        .json(&json!({ "query": "{ me { id } }" }))
        .send()
        .await
        .expect("send");
    let body: serde_json::Value = basic.json().await.expect("json");
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");

    // And the genuine token still works after all that.
    app.me(Some(&good)).await.assert_ok();
}

async fn a_revoked_keys_tokens_stop_at_once_on_the_revoking_node(app: TestApp) {
    let (_, secret, key_id) = app.customer_with_key("jane@smith-cpa.com").await;
    let token = app.token_for(&secret).await;
    app.me(Some(&token)).await.assert_ok();
    app.identity
        .revoke_key(
            &ApiKeyId::from_string(key_id),
            &taxbridge_domain::audit::Who::operator(),
        )
        .await
        .expect("revoke");
    let response = app.me(Some(&token)).await;
    assert_eq!(response.code(), "UNAUTHENTICATED", "{}", response.body);
    assert!(
        response.message().contains("revoked"),
        "{}",
        response.message()
    );
}

/// The setting promises that a key revoked on another node (or with the CLI) stops within
/// `revocation_check_seconds` (2 s here). Twenty keys, each in use right up to its revocation,
/// measured from the revocation's commit to the first refusal.
async fn a_key_revoked_by_another_process_stops_within_the_promised_seconds(app: TestApp) {
    let promise = IdentitySettings::default().grant_cache_ttl;
    // Another node or the CLI: its own connection to the same database, its own cache.
    let elsewhere_store = taxbridge_store::connect(&app.database_url)
        .await
        .expect("second connection");
    let elsewhere = std::sync::Arc::new(Identity::new(
        std::sync::Arc::new(elsewhere_store),
        &secrecy::SecretSlice::from(b"the-cli-never-signs-a-token-xxxx".to_vec()),
        IdentitySettings::default(),
    ));
    let app = std::sync::Arc::new(app);
    let mut trials = Vec::new();
    for trial in 0..20 {
        let (app, elsewhere) = (app.clone(), elsewhere.clone());
        trials.push(tokio::spawn(async move {
            let (_, secret, key_id) = app
                .customer_with_key(&format!("user{trial}@smith-cpa.com"))
                .await;
            let token = app.token_for(&secret).await;
            // In use right up to the revocation, so this node holds a fresh grant.
            tokio::time::sleep(Duration::from_millis(50 * trial)).await;
            app.me(Some(&token)).await.assert_ok();
            assert!(elsewhere
                .revoke_key(
                    &ApiKeyId::from_string(key_id),
                    &taxbridge_domain::audit::Who::operator()
                )
                .await
                .expect("revoke"));
            let revoked_at = Instant::now();
            loop {
                let response = app.me(Some(&token)).await;
                if response.code() == "UNAUTHENTICATED" {
                    break revoked_at.elapsed();
                }
                response.assert_ok();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let mut took = Vec::new();
    for trial in trials {
        took.push(trial.await.expect("trial"));
    }
    let slowest = took.iter().max().copied().unwrap_or_default();
    assert!(
        slowest <= promise,
        "a revoked key still worked {slowest:?} after revocation (promise: {promise:?}; all: {took:?})"
    );
}

async fn a_key_that_expires_stops_its_tokens(app: TestApp) {
    let account = app
        .identity
        .create_customer(
            "jane@smith-cpa.com",
            None,
            &taxbridge_domain::audit::Who::operator(),
        )
        .await
        .expect("account");
    let generated = api_keys::generate(KeyKind::Personal);
    let now = Timestamp::now();
    app.store
        .insert_api_key(
            &ApiKey {
                id: ApiKeyId::generate(),
                account_id: account.id.clone(),
                name: "short-lived".into(),
                kind: KeyKind::Personal,
                hash: generated.hash,
                display_prefix: generated.display_prefix,
                created_at: now,
                last_used_at: None,
                expires_at: Some(now.plus_seconds(2)),
                revoked_at: None,
            },
            &taxbridge_domain::audit::AuditEvent::by_system(
                taxbridge_domain::audit::Action::ApiKeyCreated,
            ),
        )
        .await
        .expect("key");
    let token = app
        .token_for(secrecy::ExposeSecret::expose_secret(&generated.secret))
        .await;
    app.me(Some(&token)).await.assert_ok();
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    assert_eq!(app.me(Some(&token)).await.code(), "UNAUTHENTICATED");
}

async fn a_disabled_accounts_tokens_stop(app: TestApp) {
    let (account_id, secret, _) = app.customer_with_key("jane@smith-cpa.com").await;
    let token = app.token_for(&secret).await;
    app.store
        .set_account_disabled(&AccountId::from_string(account_id), Some(Timestamp::now()))
        .await
        .expect("disable");
    let started = Instant::now();
    while app.me(Some(&token)).await.code() != "UNAUTHENTICATED" {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a disabled account kept working"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.login(&secret).await.code(), "UNAUTHENTICATED");
}

async fn login_records_when_a_key_was_last_used(app: TestApp) {
    let (_, secret, key_id) = app.customer_with_key("jane@smith-cpa.com").await;
    let key_id = ApiKeyId::from_string(key_id);
    let before = Timestamp::now();
    app.token_for(&secret).await;
    let started = Instant::now();
    loop {
        let grant = app
            .store
            .grant_by_key_id(&key_id)
            .await
            .expect("read")
            .expect("key");
        if let Some(used) = grant.key.last_used_at {
            assert!(used >= before.plus_seconds(-1), "{used} before {before}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "last_used_at never written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn partners_log_in_with_their_partner_key(app: TestApp) {
    let (account, _, secret) = app
        .identity
        .create_partner(
            "Qount",
            "qount",
            "eng@qount.io",
            &taxbridge_domain::audit::Who::operator(),
        )
        .await
        .expect("partner");
    let secret = secrecy::ExposeSecret::expose_secret(&secret).to_owned();
    assert!(secret.starts_with("tb_ptk_"), "{secret}");
    let token = app.token_for(&secret).await;
    let me = app.me(Some(&token)).await;
    assert_eq!(me.assert_ok()["me"]["accountType"], "partner");
    assert_eq!(me.assert_ok()["me"]["id"], account.id.to_string());
}
