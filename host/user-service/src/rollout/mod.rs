//! Rolling a plugin out across replicas: the desired state in the database, the follower each
//! replica runs, the fleet view and the rollout report. The stages themselves (shadow, canary,
//! the diff, the decision log) run in [`policy_host::rollout`].

pub mod artifacts;
pub mod config;
pub mod desired_state;
pub mod fleet;
pub mod report;
pub mod sync;

/// The account a password decision is for: the first context word that looks like an email
/// address (register, change, reset and check all pass it). It picks the canary bucket.
pub fn account_key(context_words: &[String]) -> Option<&str> {
    context_words
        .iter()
        .map(String::as_str)
        .find(|word| word.contains('@'))
}
