//! The words a password may not be: the account's context words (email, names, service name)
//! and the configured blocked words, kept in [`normalize::fold`]ed form so that a password
//! matches whatever leetspeak or separators either side was written with.

use crate::normalize::{self, fold};

/// Shorter folded words are ignored: they can't be a whole acceptable-length password, nor a
/// meaningful unit of one.
const MIN_WORD_CHARS: usize = 3;

/// A list of folded words, matched whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoldedWords {
    folded: Vec<String>,
}

impl FoldedWords {
    /// The context words of an account: each word as given and each of its parts (a name's
    /// words, an address's words split at separators, `@` and `+`), an email address as a whole, without its `@`, its local part (and the part
    /// before a `+tag`), its domain and each domain label; and the service's name.
    pub fn context(words: &[String], service: Option<&str>) -> Self {
        let mut list = Self::default();
        for word in words.iter().map(String::as_str).chain(service) {
            list.add_context_word(&normalize::comparison_key(word));
        }
        list
    }

    /// The configured blocked words, each as given.
    pub fn blocked(words: &[String]) -> Self {
        let mut list = Self::default();
        for word in words {
            list.add(&normalize::comparison_key(word));
        }
        list
    }

    /// True when any of the (already folded) candidates is one of the words.
    pub fn matches_any(&self, folded_candidates: &[String]) -> bool {
        folded_candidates
            .iter()
            .any(|candidate| self.contains(candidate))
    }

    /// True when the (already folded) candidate is one of the words.
    pub fn contains(&self, folded_candidate: &str) -> bool {
        self.folded.iter().any(|word| word == folded_candidate)
    }

    /// Adds a keyed context word, its parts and, for an email address, its pieces.
    fn add_context_word(&mut self, key: &str) {
        self.add(key);
        for part in key.split(|c: char| normalize::is_separator(c) || matches!(c, '@' | '+')) {
            self.add(part);
        }
        if let Some((local, domain)) = key.rsplit_once('@') {
            self.add_email(local, domain);
        }
    }

    /// The pieces of an email address (the whole address is added by the caller).
    fn add_email(&mut self, local: &str, domain: &str) {
        self.add(local);
        if let Some((base, _tag)) = local.split_once('+') {
            self.add(base);
        }
        self.add(&format!("{local}{domain}"));
        self.add(domain);
        for label in domain.split('.') {
            self.add(label);
        }
    }

    /// Folds `key` and keeps it unless too short or already there.
    fn add(&mut self, key: &str) {
        let folded = fold(key);
        if folded.chars().count() >= MIN_WORD_CHARS && !self.contains(&folded) {
            self.folded.push(folded);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(words: &[&str]) -> FoldedWords {
        let words: Vec<String> = words.iter().map(ToString::to_string).collect();
        FoldedWords::context(&words, Some("Acme ID"))
    }

    #[test]
    fn an_email_address_is_matched_whole_and_by_its_pieces() {
        let list = context(&["Maria.Gonzalez+shop@Mail.Example.org"]);
        for piece in [
            "maria.gonzalez+shop@mail.example.org",
            "mariagonzalez+shopmailexampleorg",
            "maria.gonzalez+shop",
            "maria.gonzalez",
            "maria",
            "gonzalez",
            "mail.example.org",
            "example",
            "acme id",
            "acme",
        ] {
            assert!(list.contains(&fold(piece)), "{piece}");
        }
        assert!(!list.contains(&fold("id")), "too short to be a word");
        assert!(!list.contains(&fold("maria likes long walks")));
    }

    #[test]
    fn leetspeak_on_either_side_matches() {
        let list = context(&["j0hn.sm1th@example.org"]);
        assert!(list.contains(&fold("john.smith@example.org")));
        assert!(list.contains(&fold("j0hn_sm1th")));
        assert!(list.matches_any(&[fold("nobody"), fold("johnsmith")]));
    }

    #[test]
    fn blocked_words_are_folded_too() {
        let list = FoldedWords::blocked(&["Widget Co".to_owned(), "x".to_owned()]);
        assert!(list.contains(&fold("w1dg3t-c0")));
        assert!(!list.contains(&fold("x")));
    }
}
