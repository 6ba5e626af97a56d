//! Password decisions through a slot's staged candidate: a canary answers for the accounts in
//! its share; a shadow runs after the serving answer, off the response path. Every decision
//! makes a [`DecisionLine`] for the decision log, and the diff is built from the same lines.

use super::PolicyHost;
use crate::{
    decision::DecisionRecord,
    password_policy::PasswordInput,
    rollout::{
        StageKind, Staged,
        bucket::account_tag,
        decision_log::{DecisionLine, Role},
    },
};
use std::{sync::Arc, time::Instant};

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
        let catalog = self.catalog.clone();
        let staging = catalog.staging();
        let log = staging.decision_log();
        let staged = staging.get(name);
        let started = Instant::now();
        if let Some(staged) = staged
            .as_ref()
            .filter(|staged| staged.routes_to_candidate(name, account))
        {
            let record = catalog
                .evaluate_password_on(name, &staged.plugin, input)
                .await;
            let line = DecisionLine::new(name, Role::Canary, &record, started.elapsed());
            staged.diff.observe_candidate(&line);
            log.emit(&line);
            if let Some(reason) = staged.abort_reason() {
                staging.auto_abort(name, staged, reason);
            }
            return record;
        }
        let record = self.evaluate_password(name, input).await;
        let line = DecisionLine::new(name, Role::Serving, &record, started.elapsed());
        log.emit(&line);
        if let Some(staged) = staged {
            staged.diff.observe_serving(&line);
            if staged.plan.stage == StageKind::Shadow {
                self.shadow(name, staged, input, account, line);
            }
        }
        record
    }

    /// Runs the candidate on `input` in a task of its own when the decision is sampled and a
    /// shadow permit is free (never waits for one), and compares its answer with `serving`.
    fn shadow(
        &self,
        name: &str,
        staged: Arc<Staged>,
        input: &PasswordInput,
        account: Option<&str>,
        serving: DecisionLine,
    ) {
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
        let input = input.clone();
        let account = account.map(|account| account_tag(&staged.plan.salt, account));
        tokio::spawn(async move {
            let _permit = permit;
            let started = Instant::now();
            let record = catalog
                .evaluate_password_on(&name, &staged.plugin, &input)
                .await;
            let line = DecisionLine::new(&name, Role::Shadow, &record, started.elapsed());
            catalog.staging().decision_log().emit(&line);
            staged.diff.compare(&serving, &line, account);
            if let Some(reason) = staged.abort_reason() {
                catalog.staging().auto_abort(&name, &staged, reason);
            }
        });
    }
}
