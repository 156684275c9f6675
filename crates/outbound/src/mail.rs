//! Sign-in codes by SMTP, through `lettre` (spec §8), when `[mail] smtp_url` is set.
//!
//! The URL names the server, its port, its TLS and its credentials in one setting:
//! `smtps://user:pass@mail.example.com` (TLS from the start), `smtp://…?tls=required`
//! (STARTTLS, refused when the server cannot), or `smtp://localhost:1025` (plain, for a
//! local relay or a test receiver). The mail server is the operator's own, chosen in settings,
//! so it is not subject to the partner egress policy.

use async_trait::async_trait;
use lettre::{
    message::{header::ContentType, Mailbox},
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};
use std::time::Duration;
use taxbridge_domain::{email::Email, sign_in::Mailer};

/// How long one message may take to hand over.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    /// A mailer for `smtp_url`, sending from `from` (`Taxbridge <taxbridge@example.com>`).
    /// The error says which of the two is wrong, without repeating the URL (it may hold a
    /// password).
    pub fn new(smtp_url: &str, from: &str) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|err| {
                format!("[mail] smtp_url is not an SMTP URL such as smtps://user:pass@mail.example.com or smtp://localhost:1025 ({err})")
            })?
            .timeout(Some(SEND_TIMEOUT))
            .build();
        let from: Mailbox = from.parse().map_err(|err| {
            format!(
                "[mail] from is not a mailbox such as `Taxbridge <taxbridge@example.com>` ({err})"
            )
        })?;
        Ok(Self { transport, from })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send_sign_in_code(&self, to: &Email, code: &str) -> Result<(), String> {
        let to: Mailbox = to
            .as_str()
            .parse()
            .map_err(|err| format!("cannot address a message to this email: {err}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("Your Taxbridge sign-in code: {code}"))
            .header(ContentType::TEXT_PLAIN)
            .body(format!(
                "Your Taxbridge sign-in code is {code}\n\n\
                 Enter it on the sign-in page within 10 minutes. If you did not ask to sign in, \
                 you can ignore this message: nobody can sign in without the code.\n"
            ))
            .map_err(|err| format!("could not build the message: {err}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|err| format!("the mail server did not take the message: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The URL may hold a password: a refusal says what is wrong without repeating it.
    #[test]
    fn bad_settings_are_refused_without_repeating_the_url() {
        for url in [
            "http://user:s3cret-pass@mail.example.com",
            "not a url s3cret-pass",
        ] {
            let Err(err) = SmtpMailer::new(url, "Taxbridge <t@example.com>") else {
                panic!("{url} was accepted");
            };
            assert!(err.contains("[mail] smtp_url"), "{err}");
            assert!(!err.contains("s3cret-pass"), "{err}");
        }
        let Err(err) = SmtpMailer::new("smtp://localhost:1025", "not a mailbox") else {
            panic!("a bad sender was accepted");
        };
        assert!(err.contains("[mail] from"), "{err}");
        assert!(SmtpMailer::new("smtps://u:p@mail.example.com", "t@example.com").is_ok());
    }
}
