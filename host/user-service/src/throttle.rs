//! Login throttles that hold under concurrency and across replicas.
//!
//! An attempt is counted **before** its password is checked, against the account (its
//! `failed_logins`) and against the client (its address's row in `client_login_failures`),
//! each by one statement that increments and returns the new count. The decision follows from
//! the counts this attempt got, so N concurrent attempts get N distinct counts and at most
//! `lock-after-failures` of them are ever evaluated, on any number of replicas sharing the
//! database:
//!
//! - account count above `lock-after-failures` (counting this attempt): locked;
//! - either count above `captcha-after-failures`: a CAPTCHA is required;
//! - otherwise the password is checked.
//!
//! An attempt whose password is never checked (locked, or without an accepted CAPTCHA) is
//! taken back, so refused attempts cannot lock an account: the account count is always the
//! failed evaluations since the last success plus the attempts in flight. A success clears both
//! counts. Client counts are forgotten after `client-failures-window-s` without attempts.

use crate::{
    config::FlowConfig,
    store::{Store, User, now},
};
use std::sync::atomic::{AtomicI64, Ordering};

/// How often, at most, expired client counts are deleted (seconds).
const PRUNE_EVERY_S: i64 = 600;

/// What to do with an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Check the password.
    Evaluate,
    /// Check the password only with an accepted CAPTCHA.
    CaptchaRequired,
    /// Refuse: the account is locked until a password reset.
    Locked,
}

/// One counted attempt.
#[derive(Debug)]
pub struct Attempt {
    /// The account, with `failed_logins` counting this attempt; `None` when there is none.
    pub user: Option<User>,
    /// The client's count, this attempt included.
    pub client_failures: i64,
    client: String,
}

/// The throttle over the store.
#[derive(Clone)]
pub struct LoginThrottle {
    store: Store,
    captcha_after: i64,
    lock_after: i64,
    window_s: i64,
}

impl LoginThrottle {
    /// A throttle counting in `store`, with the limits of `flows`.
    pub fn new(store: Store, flows: &FlowConfig) -> Self {
        Self {
            store,
            captcha_after: i64::from(flows.captcha_after_failures),
            lock_after: i64::from(flows.lock_after_failures),
            window_s: i64::try_from(flows.client_failures_window_s).unwrap_or(i64::MAX),
        }
    }

    /// Counts an attempt on the account with canonical address `email` from `client` (a
    /// [`crate::client_address::throttle_key`]). The two counts are independent statements,
    /// sent together.
    pub async fn begin(&self, email: &str, client: &str) -> sqlx::Result<Attempt> {
        let now = now();
        let (user, client_failures) = tokio::try_join!(
            self.store.count_login_attempt(email),
            self.store
                .count_client_attempt(client, now, now.saturating_sub(self.window_s)),
        )?;
        self.prune_now_and_then(now);
        Ok(Attempt {
            user,
            client_failures,
            client: client.to_owned(),
        })
    }

    /// The decision the counts of `attempt` call for.
    pub fn decide(&self, attempt: &Attempt) -> Decision {
        let account = attempt.user.as_ref().map_or(0, |user| user.failed_logins);
        if attempt.user.is_some() && account > self.lock_after {
            Decision::Locked
        } else if account > self.captcha_after || attempt.client_failures > self.captcha_after {
            Decision::CaptchaRequired
        } else {
            Decision::Evaluate
        }
    }

    /// Takes back an attempt whose password was not checked.
    pub async fn not_evaluated(&self, attempt: &Attempt) -> sqlx::Result<()> {
        let account = async {
            match &attempt.user {
                Some(user) => self.store.uncount_login_attempt(&user.id).await,
                None => Ok(()),
            }
        };
        tokio::try_join!(account, self.store.uncount_client_attempt(&attempt.client))?;
        Ok(())
    }

    /// The password was right: clears the client's count (the account's is cleared with the
    /// login's own update, [`Store::record_successful_login`] or a password change).
    pub async fn succeeded(&self, attempt: &Attempt) -> sqlx::Result<()> {
        self.store.clear_client_failures(&attempt.client).await
    }

    /// Deletes expired client counts, from one request every [`PRUNE_EVERY_S`] per process, in
    /// the background.
    fn prune_now_and_then(&self, now: i64) {
        static LAST_PRUNE: AtomicI64 = AtomicI64::new(0);
        let last = LAST_PRUNE.load(Ordering::Relaxed);
        if now - last < PRUNE_EVERY_S
            || LAST_PRUNE
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let store = self.store.clone();
        let before = now.saturating_sub(self.window_s);
        tokio::spawn(async move {
            match store.prune_client_failures(before).await {
                Ok(pruned) => tracing::debug!(pruned, "expired client login counts deleted"),
                Err(error) => tracing::warn!(%error, "cannot delete expired client login counts"),
            }
        });
    }
}
