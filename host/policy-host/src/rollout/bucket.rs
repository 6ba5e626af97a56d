//! The canary bucket of an account: stable across replicas, requests and restarts.

use sha2::{Digest, Sha256};

/// Buckets per percent point: a canary share can be set to 0.01 %.
const BUCKETS: u64 = 10_000;

/// The account key as compared: trimmed and lower-cased, so `Ann@Example.org ` and
/// `ann@example.org` are the same person.
pub fn normalise_account(account: &str) -> String {
    account.trim().to_lowercase()
}

/// The bucket (0..10 000) of `account` in `slot`'s rollout salted with `salt`: the first
/// eight bytes of SHA-256(slot, salt, account). A new salt reshuffles who is in the canary.
pub fn bucket(slot: &str, salt: &str, account: &str) -> u64 {
    let mut hasher = Sha256::new();
    for part in [slot, salt, &normalise_account(account)] {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") hash differently.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % BUCKETS
}

/// Whether `account` is in the first `percent` % of `slot`'s buckets.
pub fn in_canary(slot: &str, salt: &str, account: &str, percent: f64) -> bool {
    let cut = (percent.clamp(0.0, 100.0) * (BUCKETS as f64 / 100.0)).round() as u64;
    bucket(slot, salt, account) < cut
}

/// A keyed hash of the account for diff samples: enough to tell two samples of one account
/// apart from two accounts, never enough to recover the address.
pub fn account_tag(key: &str, account: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"rollout-sample\0");
    hasher.update((key.len() as u64).to_be_bytes());
    hasher.update(key.as_bytes());
    hasher.update(normalise_account(account).as_bytes());
    hex::encode(&hasher.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_person_same_bucket_whatever_the_spelling() {
        assert_eq!(
            bucket("password-policy", "s", "Ann@Example.org "),
            bucket("password-policy", "s", "ann@example.org")
        );
    }

    #[test]
    fn share_is_close_to_the_percent() {
        let inside = (0..10_000)
            .filter(|n| {
                in_canary(
                    "password-policy",
                    "salt",
                    &format!("user{n}@example.org"),
                    20.0,
                )
            })
            .count();
        assert!(
            (1_800..=2_200).contains(&inside),
            "{inside} of 10 000 in a 20 % canary"
        );
    }

    #[test]
    fn edges_are_none_and_all() {
        assert!(!in_canary("p", "s", "a@b.c", 0.0));
        assert!(in_canary("p", "s", "a@b.c", 100.0));
    }

    #[test]
    fn the_salt_reshuffles() {
        let moved = (0..1_000)
            .filter(|n| {
                let account = format!("user{n}@example.org");
                in_canary("p", "one", &account, 50.0) != in_canary("p", "two", &account, 50.0)
            })
            .count();
        assert!(
            moved > 300,
            "only {moved} of 1000 accounts moved with a new salt"
        );
    }
}
