//! Email addresses, parsed once at the edge ("parse, don't validate"): an [`Email`] is always
//! trimmed, lower-cased and shaped like a deliverable address.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid email address: {reason}")]
pub struct InvalidEmail {
    pub input: String,
    pub reason: &'static str,
}

impl Email {
    pub fn parse(raw: &str) -> Result<Self, InvalidEmail> {
        let fail = |reason| InvalidEmail {
            input: raw.chars().take(100).collect(),
            reason,
        };
        let email = raw.trim().to_lowercase();
        if email.len() > 254 {
            return Err(fail("it is longer than 254 characters"));
        }
        let (local, domain) = email
            .rsplit_once('@')
            .ok_or_else(|| fail("it has no `@`"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(fail("the part before `@` must be 1 to 64 characters"));
        }
        let local_ok = local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c))
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        if !local_ok {
            return Err(fail(
                "the part before `@` has characters an address cannot have",
            ));
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !domain_ok {
            return Err(fail("the domain after `@` must look like `example.com`"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_case_and_surrounding_space() {
        let email = Email::parse("  Jane.Doe+tax@Smith-CPA.com ").expect("valid");
        assert_eq!(email.as_str(), "jane.doe+tax@smith-cpa.com");
    }

    #[test]
    fn rejects_addresses_that_cannot_be_delivered() {
        for bad in [
            "",
            "jane",
            "@smith.com",
            "jane@",
            "jane@localhost",
            "jane@@smith.com",
            "ja ne@smith.com",
            ".jane@smith.com",
            "jane..doe@smith.com",
            "jane@-smith.com",
            "jane@smith..com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_is_idempotent(raw in "\\PC{0,80}") {
            if let Ok(email) = Email::parse(&raw) {
                let again = Email::parse(email.as_str()).expect("a parsed email parses again");
                prop_assert_eq!(again, email);
            }
        }

        #[test]
        fn simple_addresses_always_parse(local in "[a-z0-9]{1,20}", domain in "[a-z0-9]{1,20}", tld in "[a-z]{2,6}") {
            let raw = format!("{local}@{domain}.{tld}");
            let parsed = Email::parse(&raw).expect("valid");
            prop_assert_eq!(parsed.as_str(), raw.as_str());
        }
    }
}
