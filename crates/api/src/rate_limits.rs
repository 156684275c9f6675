//! Rate limits, per node, with `governor` (GCRA, keyed, lock-free reads):
//!
//! - **failed logins** per client address and per key prefix (the first characters of what
//!   was sent as a key, malformed or not): past the quota, logins from that address (or for
//!   that prefix) answer `RATE_LIMITED` until the quota refills, so guessing keys is slow.
//!   Only failures count: a client that logs in often with a good key is never refused.
//! - **requests** per API key (so per access token): a quota per second with a burst, high
//!   enough that the docs' polling clients never meet it.
//!
//! A refusal is `RATE_LIMITED` with `extensions.retryAfterSeconds` (whole seconds, at least
//! 1), HTTP 429 and `Retry-After`, and is counted in `/metrics`.
//!
//! Each node counts in memory first, a shield that costs nothing. On PostgreSQL the fleet also
//! counts the same quotas together ([`SharedLimits`], one upsert per counted event), so behind
//! a balancer spreading one client over N nodes the client still gets one node's quota, not N
//! times it. On SQLite (one node) the shared count is none.

use crate::error::ApiError;
use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::{
    net::IpAddr,
    num::NonZeroU32,
    time::{Duration, Instant},
};
use taxbridge_domain::{
    ids::ApiKeyId,
    limits::{Rate, SharedLimits},
    ttl_map::TtlMap,
};

/// The quotas: the `[rate_limits]` settings table as it is (the binary's settings tree holds
/// this type, so defaults live here once).
#[derive(Clone, Copy, Debug, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct RateLimitSettings {
    /// Failed logins one client address (or one key prefix) may make in a minute.
    pub failed_logins_per_minute: u32,
    /// Requests one API key may make each second, sustained.
    pub requests_per_second: u32,
    /// Requests one API key may make at once, above the sustained rate.
    pub request_burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            failed_logins_per_minute: 20,
            requests_per_second: 50,
            request_burst: 100,
        }
    }
}

/// How much of a presented key names its "prefix" for the failed-login limit: the type
/// prefix and a few characters, as the key's display prefix shows.
const KEY_PREFIX_CHARS: usize = 11;

/// Which limit refused a request, for the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    LoginAddress,
    LoginKeyPrefix,
    Requests,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::LoginAddress => "failed_logins_per_address",
            Limit::LoginKeyPrefix => "failed_logins_per_key_prefix",
            Limit::Requests => "requests_per_key",
        }
    }
}

pub struct RateLimits {
    failed_by_address: DefaultKeyedRateLimiter<IpAddr>,
    failed_by_prefix: DefaultKeyedRateLimiter<String>,
    /// Addresses and prefixes over their failed-login quota, and until when.
    blocked_addresses: TtlMap<IpAddr, Instant>,
    blocked_prefixes: TtlMap<String, Instant>,
    requests: DefaultKeyedRateLimiter<ApiKeyId>,
    refused: prometheus::IntCounterVec,
    shared: SharedLimits,
    login_rate: Rate,
    request_rate: Rate,
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

/// Whole seconds to wait, at least 1.
fn whole_seconds(wait: Duration) -> u64 {
    let rounded_up = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    rounded_up.max(1)
}

impl RateLimits {
    pub fn new(
        settings: RateLimitSettings,
        refused: prometheus::IntCounterVec,
        shared: SharedLimits,
    ) -> Self {
        let logins = Quota::per_minute(nonzero(settings.failed_logins_per_minute));
        let requests = Quota::per_second(nonzero(settings.requests_per_second))
            .allow_burst(nonzero(settings.request_burst));
        Self {
            failed_by_address: RateLimiter::dashmap(logins),
            failed_by_prefix: RateLimiter::dashmap(logins),
            blocked_addresses: TtlMap::new(Duration::from_secs(60), 100_000),
            blocked_prefixes: TtlMap::new(Duration::from_secs(60), 100_000),
            requests: RateLimiter::dashmap(requests),
            refused,
            shared,
            login_rate: Rate::per_minute(settings.failed_logins_per_minute),
            request_rate: Rate::per_second(settings.requests_per_second, settings.request_burst),
        }
    }

    fn refuse(&self, limit: Limit, wait: Duration) -> ApiError {
        self.refused.with_label_values(&[limit.as_str()]).inc();
        ApiError::RateLimited {
            retry_after_seconds: whole_seconds(wait),
        }
    }

    fn prefix_of(key: &str) -> String {
        key.chars().take(KEY_PREFIX_CHARS).collect()
    }

    /// Before a login: refused while the address or the key's prefix is over its quota, on
    /// this node or across the fleet.
    pub async fn login_allowed(&self, address: Option<IpAddr>, key: &str) -> Result<(), ApiError> {
        let now = Instant::now();
        let prefix = Self::prefix_of(key);
        if let Some(until) = address.and_then(|a| self.blocked_addresses.get(&a)) {
            if until > now {
                return Err(self.refuse(Limit::LoginAddress, until - now));
            }
        }
        if let Some(until) = self.blocked_prefixes.get(&prefix) {
            if until > now {
                return Err(self.refuse(Limit::LoginKeyPrefix, until - now));
            }
        }
        if !self.shared.is_shared() {
            return Ok(());
        }
        if let Some(address) = address {
            let cell = format!("login-address:{address}");
            if let Some(wait) = self.shared.wait(&cell, self.login_rate).await {
                return Err(self.refuse(Limit::LoginAddress, wait));
            }
        }
        let cell = format!("login-prefix:{prefix}");
        if let Some(wait) = self.shared.wait(&cell, self.login_rate).await {
            return Err(self.refuse(Limit::LoginKeyPrefix, wait));
        }
        Ok(())
    }

    /// After a failed login: counts it against the address and the prefix, on this node and
    /// across the fleet.
    pub async fn login_failed(&self, address: Option<IpAddr>, key: &str) {
        if self.shared.is_shared() {
            if let Some(address) = address {
                let cell = format!("login-address:{address}");
                let _ = self.shared.take(&cell, self.login_rate).await;
            }
            let cell = format!("login-prefix:{}", Self::prefix_of(key));
            let _ = self.shared.take(&cell, self.login_rate).await;
        }
        let clock = self.failed_by_address.clock();
        if let Some(address) = address {
            if let Err(not_until) = self.failed_by_address.check_key(&address) {
                let wait = not_until.wait_time_from(clock.now());
                self.blocked_addresses
                    .insert(address, Instant::now() + wait);
            }
        }
        let prefix = Self::prefix_of(key);
        if let Err(not_until) = self.failed_by_prefix.check_key(&prefix) {
            let wait = not_until.wait_time_from(self.failed_by_prefix.clock().now());
            self.blocked_prefixes.insert(prefix, Instant::now() + wait);
        }
    }

    /// One request by an authenticated key: within the node's quota first, then the fleet's.
    pub async fn request(&self, key: &ApiKeyId) -> Result<(), ApiError> {
        self.requests.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.requests.clock().now());
            self.refuse(Limit::Requests, wait)
        })?;
        if self.shared.is_shared() {
            let cell = format!("requests:{key}");
            if let Err(wait) = self.shared.take(&cell, self.request_rate).await {
                return Err(self.refuse(Limit::Requests, wait));
            }
        }
        Ok(())
    }

    /// Forgets keys whose quota is full again, so the maps (and the fleet's table) hold only
    /// recent callers.
    pub async fn forget_idle(&self) {
        self.shared.forget_full().await;
        self.failed_by_address.retain_recent();
        self.failed_by_prefix.retain_recent();
        self.requests.retain_recent();
        self.failed_by_address.shrink_to_fit();
        self.failed_by_prefix.shrink_to_fit();
        self.requests.shrink_to_fit();
    }
}

/// The web pages' limits. Sign-in attempts (asking for a code, trying one), per address and
/// per email: enough for a person who mistypes, too few to try a million codes or to flood an
/// inbox. And a signed-in user's form posts (connect software, generate or revoke a key), per
/// account: a connect makes a call to the outside and a key is a write, so a script posting
/// in a loop is held to a person's pace.
pub struct WebLimits {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_email: DefaultKeyedRateLimiter<String>,
    posts_by_account: DefaultKeyedRateLimiter<String>,
}

impl Default for WebLimits {
    fn default() -> Self {
        Self {
            by_address: RateLimiter::dashmap(Quota::per_minute(nonzero(30))),
            by_email: RateLimiter::dashmap(Quota::per_minute(nonzero(2)).allow_burst(nonzero(10))),
            posts_by_account: RateLimiter::dashmap(
                Quota::per_minute(nonzero(30)).allow_burst(nonzero(20)),
            ),
        }
    }
}

impl WebLimits {
    /// Counts one sign-in attempt; `Err(seconds to wait)` when the address or the email is over.
    pub fn attempt(&self, address: IpAddr, email: &str) -> Result<(), u64> {
        let by_address = self.by_address.check_key(&address).map_err(|not_until| {
            whole_seconds(not_until.wait_time_from(self.by_address.clock().now()))
        });
        let by_email = self
            .by_email
            .check_key(&email.to_owned())
            .map_err(|not_until| {
                whole_seconds(not_until.wait_time_from(self.by_email.clock().now()))
            });
        by_address.and(by_email)
    }

    /// Counts one form post of a signed-in account; `Err(seconds to wait)` when it is over.
    pub fn form_post(&self, account: &str) -> Result<(), u64> {
        self.posts_by_account
            .check_key(&account.to_owned())
            .map_err(|not_until| {
                whole_seconds(not_until.wait_time_from(self.posts_by_account.clock().now()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_attempts_are_limited_per_email_and_per_address() {
        let limits = WebLimits::default();
        let home: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..10 {
            assert!(limits.attempt(home, "jane@smithcpa.com").is_ok());
        }
        let wait = limits
            .attempt(home, "jane@smithcpa.com")
            .expect_err("the email's burst is spent");
        assert!(wait >= 1);
        // Another email from elsewhere is not held back by Jane's.
        let elsewhere: IpAddr = "198.51.100.7".parse().expect("ip");
        assert!(limits.attempt(elsewhere, "sam@smithcpa.com").is_ok());
        // One address trying many emails runs out too.
        let busy: IpAddr = "203.0.113.9".parse().expect("ip");
        let refused = (0..40)
            .filter(|n| {
                limits
                    .attempt(busy, &format!("user{n}@example.com"))
                    .is_err()
            })
            .count();
        assert!(refused >= 9, "{refused}");
    }

    #[test]
    fn a_signed_in_account_posts_forms_at_a_persons_pace() {
        let limits = WebLimits::default();
        for _ in 0..20 {
            assert!(limits.form_post("acc_1").is_ok());
        }
        let wait = limits.form_post("acc_1").expect_err("the burst is spent");
        assert!(wait >= 1);
        // Another account is not held back.
        assert!(limits.form_post("acc_2").is_ok());
    }

    fn limits(settings: RateLimitSettings) -> RateLimits {
        let counter =
            prometheus::IntCounterVec::new(prometheus::Opts::new("refused", "test"), &["limit"])
                .expect("counter");
        RateLimits::new(settings, counter, SharedLimits::none())
    }

    fn retry_after(err: ApiError) -> u64 {
        match err {
            ApiError::RateLimited {
                retry_after_seconds,
            } => retry_after_seconds,
            other => panic!("expected RATE_LIMITED, got {other:?}"),
        }
    }

    #[test]
    fn waits_are_whole_seconds_and_at_least_one() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(2_001)), 3);
        assert_eq!(whole_seconds(Duration::from_secs(3)), 3);
    }

    #[tokio::test]
    async fn failed_logins_past_the_quota_block_the_address_not_others() {
        let limits = limits(RateLimitSettings::default());
        let attacker: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        for i in 0..20 {
            assert!(
                limits.login_allowed(Some(attacker), "x").await.is_ok(),
                "try {i}"
            );
            limits
                .login_failed(Some(attacker), &format!("tb_pat_guess{i:04}"))
                .await;
        }
        // The 21st failure goes over: from then on the address waits.
        limits
            .login_failed(Some(attacker), "tb_pat_guess0021")
            .await;
        let wait = retry_after(
            limits
                .login_allowed(Some(attacker), "tb_pat_good")
                .await
                .expect_err("blocked"),
        );
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(limits
            .login_allowed(Some(other), "tb_pat_good")
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn failures_against_one_key_prefix_block_it_from_every_address() {
        let limits = limits(RateLimitSettings::default());
        for i in 0..21u8 {
            limits
                .login_failed(Some([10, 0, 1, i].into()), "tb_pat_AAAAxxxxxxxx")
                .await;
        }
        assert!(limits
            .login_allowed(Some([10, 9, 9, 9].into()), "tb_pat_AAAAyyyy")
            .await
            .is_err());
        assert!(limits
            .login_allowed(Some([10, 9, 9, 9].into()), "tb_pat_BBBByyyy")
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn requests_past_the_burst_wait_for_the_rate() {
        let limits = limits(RateLimitSettings {
            failed_logins_per_minute: 20,
            requests_per_second: 1,
            request_burst: 5,
        });
        let key = ApiKeyId::generate();
        for _ in 0..5 {
            assert!(limits.request(&key).await.is_ok());
        }
        assert_eq!(
            retry_after(limits.request(&key).await.expect_err("over")),
            1
        );
        assert!(limits.request(&ApiKeyId::generate()).await.is_ok());
    }
}
