//! Decisions through a slot's staged candidate, for every plugin kind: a canary answers for
//! the accounts in its share; a shadow runs after the serving answer, off the response path.
//! Every decision makes a [`DecisionLine`] (with the egress calls it made) for the decision
//! log, and the diff is built from the same lines.
//!
//! A CAPTCHA slot has no shadow: a token is single-use at the vendor, so a second
//! verification of the same token by the candidate would fail (`timeout-or-duplicate`) and
//! say nothing about the candidate; the admin API refuses it, and a shadow plan that reaches
//! a CAPTCHA slot anyway only counts skipped evaluations.

use super::{BreachRecord, PolicyHost, check_breach_on};
use crate::{
    captcha::CaptchaInput,
    decision::DecisionRecord,
    egress_calls::collect,
    password_policy::PasswordInput,
    rollout::{
        StageKind, Staged,
        bucket::account_tag,
        decision_log::{DecisionLine, Role},
    },
};
use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

impl PolicyHost {
    /// Judges a new password in slot `name` for `account` (the email, or any stable key of the
    /// person; `None` when unknown, and then the serving version answers). Without a staged
    /// candidate this is [`PolicyHost::evaluate_password`] plus the decision log.
    pub async fn evaluate_password_staged(
        &self,
        name: &str,
        input: &PasswordInput,
        account: Option<&str>,
    ) -> DecisionRecord {
        let staged = self.catalog.staging().get(name);
        if !self.wants_lines(staged.as_ref()) {
            return self.evaluate_password(name, input).await;
        }
        if let Some(staged) = canary_for(staged.as_ref(), name, account) {
            let decision = self
                .catalog
                .evaluate_password_on(name, &staged.plugin, input);
            let (record, line) = recorded(name, Role::Canary, decision).await;
            self.finish_canary(name, staged, &line);
            return record;
        }
        let (record, line) =
            recorded(name, Role::Serving, self.evaluate_password(name, input)).await;
        if let Some(shadow) = self.finish_serving(staged, &line) {
            let catalog = self.catalog.clone();
            let (slot, plugin, input) = (name.to_owned(), shadow.plugin.clone(), input.clone());
            self.shadow(name, shadow, account, line, move || async move {
                let decision = catalog.evaluate_password_on(&slot, &plugin, &input);
                recorded(&slot, Role::Shadow, decision).await.1
            });
        }
        record
    }

    /// Checks `password` against the breach corpus in slot `name` for `account`, like
    /// [`PolicyHost::evaluate_password_staged`]. A shadow's range request is the serving
    /// version's: it is answered by the gateway's cache (same URL, same slot), so the corpus
    /// is not asked twice when its answer is cacheable.
    pub async fn check_breach_staged(
        &self,
        name: &str,
        password: &str,
        account: Option<&str>,
    ) -> BreachRecord {
        let staged = self.catalog.staging().get(name);
        if !self.wants_lines(staged.as_ref()) {
            return self.check_breach(name, password).await;
        }
        if let Some(staged) = canary_for(staged.as_ref(), name, account) {
            let decision =
                check_breach_on(&self.catalog, name, Ok(staged.plugin.clone()), password);
            let (breach, line) = recorded(name, Role::Canary, decision).await;
            self.finish_canary(name, staged, &line);
            return breach;
        }
        let (breach, line) = recorded(name, Role::Serving, self.check_breach(name, password)).await;
        if let Some(shadow) = self.finish_serving(staged, &line) {
            let catalog = self.catalog.clone();
            let (slot, plugin) = (name.to_owned(), shadow.plugin.clone());
            let password = password.to_owned();
            self.shadow(name, shadow, account, line, move || async move {
                let decision = check_breach_on(&catalog, &slot, Ok(plugin), &password);
                recorded(&slot, Role::Shadow, decision).await.1
            });
        }
        breach
    }

    /// Verifies a CAPTCHA in slot `name` for `account`: a canary verifies the token instead of
    /// the serving version (the vendor sees it once); there is no CAPTCHA shadow (see the
    /// module's comment).
    pub async fn verify_captcha_staged(
        &self,
        name: &str,
        input: &CaptchaInput,
        account: Option<&str>,
    ) -> DecisionRecord {
        let staged = self.catalog.staging().get(name);
        if !self.wants_lines(staged.as_ref()) {
            return self.verify_captcha(name, input).await;
        }
        if let Some(staged) = canary_for(staged.as_ref(), name, account) {
            let decision = self.verify_captcha_with(name, Ok(staged.plugin.clone()), input);
            let (record, line) = recorded(name, Role::Canary, decision).await;
            self.finish_canary(name, staged, &line);
            return record;
        }
        let (record, line) = recorded(name, Role::Serving, self.verify_captcha(name, input)).await;
        if let Some(shadow) = self.finish_serving(staged, &line) {
            // The token was spent on the serving verification: nothing left to compare.
            shadow.diff.skip_shadow();
        }
        record
    }

    /// Whether a decision needs its [`DecisionLine`]: a staged candidate compares with it, or
    /// the decision log writes it. Otherwise the decision runs bare: recording its egress
    /// calls and building a line nobody reads cost every request (the usual case: no rollout
    /// under way, the log off).
    fn wants_lines(&self, staged: Option<&Arc<Staged>>) -> bool {
        staged.is_some() || self.catalog.staging().decision_log().is_on()
    }

    /// Logs and counts a canary's decision, and aborts the canary when its error rate says so.
    fn finish_canary(&self, name: &str, staged: &Arc<Staged>, line: &DecisionLine) {
        let staging = self.catalog.staging();
        staged.diff.observe_candidate(line);
        staging.decision_log().emit(line);
        if let Some(reason) = staged.abort_reason() {
            staging.auto_abort(name, staged, reason);
        }
    }

    /// Logs and counts a serving decision; the staged candidate when it is a shadow.
    fn finish_serving(
        &self,
        staged: Option<Arc<Staged>>,
        line: &DecisionLine,
    ) -> Option<Arc<Staged>> {
        self.catalog.staging().decision_log().emit(line);
        let staged = staged?;
        staged.diff.observe_serving(line);
        (staged.plan.stage == StageKind::Shadow).then_some(staged)
    }

    /// Runs the candidate (`run` makes its decision line) in a task of its own when the
    /// decision is sampled and a shadow permit is free (never waits for one), and compares its
    /// answer with `serving`.
    fn shadow<F, Fut>(
        &self,
        name: &str,
        staged: Arc<Staged>,
        account: Option<&str>,
        serving: DecisionLine,
        run: F,
    ) where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = DecisionLine> + Send + 'static,
    {
        let sampled = staged.plan.sample_percent >= 100.0
            || fastrand::f64() * 100.0 < staged.plan.sample_percent;
        let permit = sampled
            .then(|| staged.shadow_permits.clone().try_acquire_owned().ok())
            .flatten();
        let Some(permit) = permit else {
            staged.diff.skip_shadow();
            return;
        };
        let catalog = self.catalog.clone();
        let name = name.to_owned();
        let account = account.map(|account| account_tag(&staged.plan.salt, account));
        tokio::spawn(async move {
            // A task spawned here waits in this worker's LIFO slot, where no other worker can
            // steal it and where it runs before the next request this worker reads: yielding
            // once puts it at the back of the queue, behind the request path.
            tokio::task::yield_now().await;
            let _permit = permit;
            let line = run().await;
            catalog.staging().decision_log().emit(&line);
            staged.diff.compare(&serving, &line, account);
            if let Some(reason) = staged.abort_reason() {
                catalog.staging().auto_abort(&name, &staged, reason);
            }
        });
    }
}

/// The staged candidate when it is a canary and `account` is in its share.
fn canary_for<'a>(
    staged: Option<&'a Arc<Staged>>,
    name: &str,
    account: Option<&str>,
) -> Option<&'a Arc<Staged>> {
    staged.filter(|staged| staged.routes_to_candidate(name, account))
}

/// A decision's result that can describe itself as a [`DecisionLine`].
trait Decided {
    fn line(&self, slot: &str, role: Role, latency: Duration) -> DecisionLine;
}

impl Decided for DecisionRecord {
    fn line(&self, slot: &str, role: Role, latency: Duration) -> DecisionLine {
        DecisionLine::new(slot, role, self, latency)
    }
}

impl Decided for BreachRecord {
    fn line(&self, slot: &str, role: Role, latency: Duration) -> DecisionLine {
        DecisionLine::new(slot, role, &self.record, latency).with_outcome(&self.outcome)
    }
}

/// Runs `decision`, timing it and recording the egress calls it makes, and returns its result
/// with its line for the decision log and the diff.
async fn recorded<T: Decided>(
    slot: &str,
    role: Role,
    decision: impl Future<Output = T>,
) -> (T, DecisionLine) {
    let started = Instant::now();
    let (result, calls, dropped) = collect(decision).await;
    let line = result
        .line(slot, role, started.elapsed())
        .with_egress(calls, dropped);
    (result, line)
}
