//! Sign-in codes and web sessions.

use super::*;

taxbridge_testkit::per_database!(
    crate::open;
    a_sign_in_code_signs_in_once_and_wrong_tries_run_out,
    unknown_and_disabled_emails_get_codes_that_sign_no_one_in,
    sessions_end_on_sign_out_and_are_kept_only_as_hashes,
);

/// A mailer that keeps what it was asked to send (the sign-in service's port; the real SMTP
/// path is tested against an SMTP receiver with the pages).
#[derive(Default)]
struct Outbox(std::sync::Mutex<Vec<(String, String)>>);

#[async_trait::async_trait]
impl taxbridge_domain::sign_in::Mailer for Outbox {
    async fn send_sign_in_code(&self, to: &Email, code: &str) -> Result<(), String> {
        self.0
            .lock()
            .map_err(|e| e.to_string())?
            .push((to.to_string(), code.to_owned()));
        Ok(())
    }
}

fn sign_in(store: &Opened) -> (taxbridge_domain::sign_in::SignIn, Arc<Outbox>) {
    let outbox = Arc::new(Outbox::default());
    (
        taxbridge_domain::sign_in::SignIn::new(store.store.clone(), outbox.clone(), b"pepper"),
        outbox,
    )
}

/// The code last mailed to `email` (the mail leaves on a task of its own).
async fn mailed(outbox: &Outbox, email: &str) -> String {
    for _ in 0..100 {
        let sent = outbox.0.lock().map(|s| s.clone()).unwrap_or_default();
        if let Some((_, code)) = sent.iter().rev().find(|(to, _)| to == email) {
            return code.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no code was mailed to {email}");
}

async fn a_sign_in_code_signs_in_once_and_wrong_tries_run_out(store: Opened) {
    use taxbridge_domain::sign_in::{SignInError, CODE_TRIES};
    let account = customer("jane@smithcpa.com");
    store.insert_account(&account, &ev()).await.expect("insert");
    let (service, outbox) = sign_in(&store);
    service.send_code("Jane@SmithCPA.com").await.expect("send");
    let code = mailed(&outbox, "jane@smithcpa.com").await;
    assert_eq!(code.len(), 6);
    assert!(code.chars().all(|c| c.is_ascii_digit()));
    let wrong = if code == "000000" { "000001" } else { "000000" };
    assert_eq!(
        service
            .verify("jane@smithcpa.com", wrong, &Default::default())
            .await
            .err(),
        Some(SignInError::WrongCode(CODE_TRIES - 1))
    );
    let session = service
        .verify("jane@smithcpa.com", &code, &Default::default())
        .await
        .expect("signed in");
    assert_eq!(session.account.id, account.id);
    // Spent: the same code again is no code.
    assert_eq!(
        service
            .verify("jane@smithcpa.com", &code, &Default::default())
            .await
            .err(),
        Some(SignInError::NoCode)
    );
    // Five wrong tries, then even the right code needs a new one.
    service.send_code("jane@smithcpa.com").await.expect("send");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let code = mailed(&outbox, "jane@smithcpa.com").await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    for left in (1..CODE_TRIES).rev() {
        assert_eq!(
            service
                .verify("jane@smithcpa.com", wrong, &Default::default())
                .await
                .err(),
            Some(SignInError::WrongCode(left))
        );
    }
    assert_eq!(
        service
            .verify("jane@smithcpa.com", wrong, &Default::default())
            .await
            .err(),
        Some(SignInError::NoCode)
    );
    assert_eq!(
        service
            .verify("jane@smithcpa.com", &code, &Default::default())
            .await
            .err(),
        Some(SignInError::NoCode)
    );
    assert!(matches!(
        service
            .verify("not an email", "123456", &Default::default())
            .await,
        Err(SignInError::BadEmail(_))
    ));
}

async fn unknown_and_disabled_emails_get_codes_that_sign_no_one_in(store: Opened) {
    use taxbridge_domain::sign_in::SignInError;
    let disabled = customer("gone@smithcpa.com");
    store
        .insert_account(&disabled, &ev())
        .await
        .expect("insert");
    store
        .set_account_disabled(&disabled.id, Some(Timestamp::now()))
        .await
        .expect("disable");
    let (service, outbox) = sign_in(&store);
    // The same answer as for a known email, and a code row written all the same.
    service
        .send_code("nobody@smithcpa.com")
        .await
        .expect("same answer");
    service
        .send_code("gone@smithcpa.com")
        .await
        .expect("same answer");
    assert!(store
        .code_of("nobody@smithcpa.com")
        .await
        .expect("read")
        .is_some());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        outbox.0.lock().map(|s| s.is_empty()).unwrap_or(false),
        "no mail leaves"
    );
    for email in ["nobody@smithcpa.com", "gone@smithcpa.com"] {
        assert!(matches!(
            service.verify(email, "123456", &Default::default()).await,
            Err(SignInError::WrongCode(_))
        ));
    }
}

async fn sessions_end_on_sign_out_and_are_kept_only_as_hashes(store: Opened) {
    let account = customer("sam@smithcpa.com");
    store.insert_account(&account, &ev()).await.expect("insert");
    let (service, outbox) = sign_in(&store);
    service.send_code("sam@smithcpa.com").await.expect("send");
    let code = mailed(&outbox, "sam@smithcpa.com").await;
    let session = service
        .verify("sam@smithcpa.com", &code, &Default::default())
        .await
        .expect("signed in");
    let (who, csrf) = service
        .session(&session.token)
        .await
        .expect("read")
        .expect("live");
    assert_eq!(who.id, account.id);
    assert_eq!(csrf, session.csrf);
    assert!(
        store
            .session_of(&session.token)
            .await
            .expect("read")
            .is_none(),
        "stored hashed"
    );
    assert!(service
        .session("forged-token")
        .await
        .expect("read")
        .is_none());
    service
        .sign_out(&session.token, &session.account, &Default::default())
        .await
        .expect("sign out");
    assert!(service
        .session(&session.token)
        .await
        .expect("read")
        .is_none());
    // An expired session is no session, and the sweep removes it.
    let stale = taxbridge_domain::sign_in::StoredSession {
        account_id: account.id.clone(),
        csrf: "c".into(),
        expires_at: Timestamp::from_millis(Timestamp::now().as_millis() - 1),
    };
    store
        .insert_session("stale-hash", &stale, Timestamp::now(), &ev())
        .await
        .expect("insert");
    assert!(service.sweep().await.expect("sweep") >= 1);
    assert!(store
        .session_of("stale-hash")
        .await
        .expect("read")
        .is_none());
}
