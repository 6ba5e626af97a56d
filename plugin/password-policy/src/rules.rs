//! The rules themselves: one pure function from a password and its context to a decision.

use crate::{blocklist, normalize, patterns, settings::PolicySettings};

/// The verdict of a policy decision (mirrors the WIT `verdict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

/// One rule the password breaks (mirrors the WIT `finding`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Stable code, e.g. `too-short`.
    pub code: &'static str,
    /// One sentence of guidance.
    pub message: String,
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    /// Length in Unicode code points after NFKC (0 when the password was too long to normalise).
    pub length: usize,
    /// The minimum length that applied (depends on `has_mfa`).
    pub min_length: usize,
}

/// A password and what is known about its account (mirrors the WIT `password-input`).
#[derive(Debug, Clone, Copy)]
pub struct PasswordInput<'a> {
    pub password: &'a str,
    pub has_mfa: bool,
    pub context_words: &'a [String],
}

/// Stable finding codes. Clients key on these; never reword or reuse one.
pub mod codes {
    pub const TOO_SHORT: &str = "too-short";
    pub const TOO_LONG: &str = "too-long";
    pub const CONTROL_CHARACTER: &str = "control-character";
    pub const COMMON_PASSWORD: &str = "common-password";
    pub const CONTEXT_WORD: &str = "context-word";
    pub const BLOCKED_WORD: &str = "blocked-word";
    pub const REPETITIVE: &str = "repetitive";
    pub const SEQUENTIAL: &str = "sequential";
}

/// Beyond this many code points the password is not even normalised: it is too long whatever
/// NFKC would make of it, and normalising megabytes would only burn the decision's deadline.
const NORMALISE_LIMIT_FACTOR: usize = 4;

/// Judges a new password against NIST SP 800-63B rev. 4. No composition rules: length,
/// block lists (common passwords, context words, configured words) and trivial patterns.
pub fn evaluate(input: PasswordInput<'_>, settings: &PolicySettings) -> Evaluation {
    let min_length = if input.has_mfa {
        settings.min_length_with_mfa
    } else {
        settings.min_length
    };
    let max_length = settings.max_length;
    let too_long = |length: Option<usize>| Finding {
        code: codes::TOO_LONG,
        message: match length {
            Some(length) => format!("Use at most {max_length} characters; this one has {length}."),
            None => format!("Use at most {max_length} characters."),
        },
    };

    if input.password.chars().count() > max_length * NORMALISE_LIMIT_FACTOR {
        return Evaluation {
            verdict: Verdict::Deny,
            findings: vec![too_long(None)],
            length: 0,
            min_length,
        };
    }

    let normalised = normalize::nfkc(input.password);
    let length = normalised.chars().count();
    let mut findings = Vec::new();

    if length < min_length {
        findings.push(Finding {
            code: codes::TOO_SHORT,
            message: format!(
                "Use at least {min_length} characters; this one has {length}. A few unrelated words make a long password that is easy to remember."
            ),
        });
    }
    if length > max_length {
        findings.push(too_long(Some(length)));
    }
    if normalised.chars().any(char::is_control) {
        findings.push(Finding {
            code: codes::CONTROL_CHARACTER,
            message: "Remove control characters such as tabs or line breaks.".to_owned(),
        });
    }

    let key = normalised.to_lowercase();
    let variants = normalize::variants(&key);
    if variants
        .iter()
        .any(|variant| blocklist::is_common_password(variant))
    {
        findings.push(Finding {
            code: codes::COMMON_PASSWORD,
            message: "This is one of the most commonly used passwords, so it is among the first an attacker tries; choose something less predictable.".to_owned(),
        });
    }
    if matches_any(
        &variants,
        context_keys(input.context_words, settings.service_name.as_deref()),
    ) {
        findings.push(Finding {
            code: codes::CONTEXT_WORD,
            message: "Don't use your email address, name, username or the name of this service as your password.".to_owned(),
        });
    }
    if matches_any(
        &variants,
        settings
            .blocked_words
            .iter()
            .map(|word| normalize::comparison_key(word)),
    ) {
        findings.push(Finding {
            code: codes::BLOCKED_WORD,
            message:
                "This password is on this service's list of blocked words; choose something else."
                    .to_owned(),
        });
    }
    if patterns::is_repetitive(&key) {
        findings.push(Finding {
            code: codes::REPETITIVE,
            message: "Avoid repeating the same characters or group of characters.".to_owned(),
        });
    } else if patterns::is_sequential(&key) {
        findings.push(Finding {
            code: codes::SEQUENTIAL,
            message: "Avoid sequences such as 12345678, abcdefgh or keyboard rows like qwertyuiop."
                .to_owned(),
        });
    }

    let verdict = if findings.is_empty() {
        Verdict::Allow
    } else {
        Verdict::Deny
    };
    Evaluation {
        verdict,
        findings,
        length,
        min_length,
    }
}

/// True when a password variant equals any of the (already keyed) words, as given or with
/// its separators removed (`john smith` → `johnsmith`). Words shorter than 3 characters are
/// ignored: they can't be a whole acceptable-length password anyway.
fn matches_any(variants: &[String], words: impl Iterator<Item = String>) -> bool {
    words.filter(|word| word.chars().count() >= 3).any(|word| {
        variants.contains(&word) || {
            let joined: String = word
                .chars()
                .filter(|c| !c.is_whitespace() && !matches!(c, '.' | '-' | '_'))
                .collect();
            joined != word && variants.contains(&joined)
        }
    })
}

/// The comparison keys of the context words: each word as given, an email's local part and
/// domain name, each part of a multi-word name, and the service name.
fn context_keys<'a>(
    words: &'a [String],
    service: Option<&'a str>,
) -> impl Iterator<Item = String> + 'a {
    words
        .iter()
        .map(String::as_str)
        .chain(service)
        .flat_map(|word| {
            let key = normalize::comparison_key(word);
            let mut keys = vec![key.clone()];
            if let Some((local, domain)) = key.split_once('@') {
                keys.push(local.to_owned());
                if let Some(name) = domain.split('.').next() {
                    keys.push(name.to_owned());
                }
            }
            keys.extend(
                key.split(|c: char| c.is_whitespace() || matches!(c, '.' | '-' | '_' | '@'))
                    .map(str::to_owned),
            );
            keys
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes_for(password: &str, context: &[&str]) -> Vec<&'static str> {
        let context: Vec<String> = context.iter().map(|w| w.to_string()).collect();
        let input = PasswordInput {
            password,
            has_mfa: false,
            context_words: &context,
        };
        evaluate(input, &PolicySettings::default())
            .findings
            .iter()
            .map(|f| f.code)
            .collect()
    }

    #[test]
    fn a_long_unrelated_passphrase_is_allowed() {
        assert!(codes_for("correct horse battery staple", &[]).is_empty());
        assert!(codes_for("Grüße aus München, mein Freund", &[]).is_empty());
    }

    #[test]
    fn length_counts_code_points_after_nfkc() {
        // 15 full-width letters are 15 code points after NFKC; 14 are too short.
        assert!(codes_for("ｑｕｉｅｔｍｏｏｎｌｉｇｈｔｒ", &[]).is_empty());
        assert_eq!(
            codes_for("ｑｕｉｅｔｍｏｏｎｌｉｇｈｔ", &[]),
            vec![codes::TOO_SHORT]
        );
        // The "ﬁ" ligature becomes two letters.
        assert_eq!(normalize::nfkc("ﬁ").chars().count(), 2);
    }

    #[test]
    fn mfa_lowers_the_minimum() {
        let input = PasswordInput {
            password: "tulip-orbit",
            has_mfa: true,
            context_words: &[],
        };
        let outcome = evaluate(input, &PolicySettings::default());
        assert_eq!(outcome.verdict, Verdict::Allow);
        assert_eq!(outcome.min_length, 8);
    }

    #[test]
    fn common_passwords_and_their_variants_are_refused() {
        assert!(codes_for("password1234567", &[]).contains(&codes::COMMON_PASSWORD));
        assert!(codes_for("P@ssw0rd2024!!!!", &[]).contains(&codes::COMMON_PASSWORD));
    }

    #[test]
    fn context_words_are_refused() {
        let context = ["maria.gonzalez@example.org", "Maria Gonzalez"];
        assert!(codes_for("maria.gonzalez@example.org", &context).contains(&codes::CONTEXT_WORD));
        assert!(codes_for("MariaGonzalez1234", &context).contains(&codes::CONTEXT_WORD));
        assert!(codes_for("m4r14.g0nz4l3z", &context).contains(&codes::CONTEXT_WORD));
        assert!(!codes_for("maria likes long walks", &context).contains(&codes::CONTEXT_WORD));
    }

    #[test]
    fn patterns_are_refused() {
        assert_eq!(codes_for("aaaaaaaaaaaaaaaa", &[]), vec![codes::REPETITIVE]);
        assert_eq!(codes_for("abcdefghijklmnopq", &[]), vec![codes::SEQUENTIAL]);
    }

    #[test]
    fn huge_passwords_are_refused_without_normalising() {
        let huge = "x".repeat(4096);
        let outcome = evaluate(
            PasswordInput {
                password: &huge,
                has_mfa: false,
                context_words: &[],
            },
            &PolicySettings::default(),
        );
        assert_eq!(outcome.findings.len(), 1);
        assert_eq!(outcome.findings[0].code, codes::TOO_LONG);
    }

    #[test]
    fn sixty_four_characters_are_accepted_and_never_truncated() {
        let passphrase = "the quiet harbour keeps its lanterns lit for every late sailor!!";
        assert_eq!(passphrase.chars().count(), 64);
        assert!(codes_for(passphrase, &[]).is_empty());
        assert_eq!(
            codes_for(&format!("{passphrase}x"), &[]),
            vec![codes::TOO_LONG]
        );
    }
}
