//! Normalisation and the "simple variants" a whole-password comparison must see through.

use unicode_normalization::UnicodeNormalization;

/// NFKC, as NIST SP 800-63B asks before counting and comparing: full-width letters,
/// ligatures and compatibility forms become their plain equivalents.
pub fn nfkc(password: &str) -> String {
    // ASCII text is its own NFKC form: skip the normaliser for the common case.
    if password.is_ascii() {
        password.to_owned()
    } else {
        password.nfkc().collect()
    }
}

/// The comparison key of a password or word: NFKC, then lower case.
pub fn comparison_key(text: &str) -> String {
    nfkc(text).to_lowercase()
}

/// The variants of an already-keyed password that are compared against block lists: the key
/// itself, without trailing digits and symbols (`password123!`), without separators
/// (`pass word`), and with common leetspeak undone (`p@ssw0rd`). Deduplicated, never empty.
pub fn variants(key: &str) -> Vec<String> {
    fn push(out: &mut Vec<String>, candidate: String) {
        if !candidate.is_empty() && !out.contains(&candidate) {
            out.push(candidate);
        }
    }
    let mut out: Vec<String> = Vec::with_capacity(8);
    let stripped = strip_trailing_digits_and_symbols(key);
    push(&mut out, key.to_owned());
    push(&mut out, stripped.to_owned());
    if key.contains(is_separator) {
        push(&mut out, remove_separators(key));
        push(&mut out, remove_separators(stripped));
    }
    // Undo leetspeak on each base found so far (only when there is something to undo).
    for index in 0..out.len() {
        let base = out[index].clone();
        if base.contains(is_leet) {
            let with_i = unleet(&base, 'i');
            push(
                &mut out,
                strip_trailing_digits_and_symbols(&with_i).to_owned(),
            );
            if base.contains('1') {
                push(&mut out, unleet(&base, 'l'));
            }
            push(&mut out, with_i);
        }
    }
    out
}

/// Characters that separate the words of a passphrase, a name or an email address's parts.
pub fn is_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '.' | '-' | '_')
}

fn is_leet(c: char) -> bool {
    c == '1' || leet_letter(c).is_some()
}

/// The letter a leetspeak character stands for. `1` is left out: it is ambiguous (`i` or
/// `l`), so each caller decides what it becomes.
fn leet_letter(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '3' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' | '+' => 't',
        '8' => 'b',
        '9' => 'g',
        '!' | '|' => 'i',
        _ => return None,
    })
}

/// The folded form in which context words and blocked words are compared with a password
/// (both sides folded alike): separators dropped, leetspeak undone, and `1`, `i`, `l`, `!` and
/// `|` all made `i` so that either reading of `1` matches. `m4r14.g0nz4l3z@3x4mpl3.0rg` and
/// `maria.gonzalez@example.org` fold to the same text. `text` is already keyed.
pub fn fold(text: &str) -> String {
    text.chars()
        .filter(|c| !is_separator(*c))
        .map(|c| match c {
            '1' | 'l' => 'i',
            other => leet_letter(other).unwrap_or(other),
        })
        .collect()
}

/// `password2024!` → `password`. Leaves the text alone when nothing else would remain.
fn strip_trailing_digits_and_symbols(text: &str) -> &str {
    let trimmed = text.trim_end_matches(|c: char| {
        c.is_ascii_digit() || c.is_ascii_punctuation() || c.is_whitespace()
    });
    if trimmed.is_empty() { text } else { trimmed }
}

/// Drops spaces, dots, dashes and underscores: `john.smith` and `john smith` → `johnsmith`.
fn remove_separators(text: &str) -> String {
    text.chars().filter(|c| !is_separator(*c)).collect()
}

/// Undoes common character substitutions. `1` is ambiguous, so the caller picks `i` or `l`.
fn unleet(text: &str, one_as: char) -> String {
    text.chars()
        .map(|c| match c {
            '1' => one_as,
            other => leet_letter(other).unwrap_or(other),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_width_letters_become_ascii() {
        assert_eq!(nfkc("ｐａｓｓｗｏｒｄ"), "password");
        assert_eq!(comparison_key("ＰａｓｓＷｏｒｄ"), "password");
    }

    #[test]
    fn variants_see_through_suffixes_leet_and_separators() {
        assert!(variants("password123!").contains(&"password".to_owned()));
        assert!(variants("p@ssw0rd").contains(&"password".to_owned()));
        assert!(variants("p4ssw0rd2024").contains(&"password".to_owned()));
        assert!(variants("john.smith").contains(&"johnsmith".to_owned()));
        assert!(variants("1234").contains(&"1234".to_owned()));
        assert!(variants("wile e. coyote 2024").contains(&"wileecoyote".to_owned()));
    }

    #[test]
    fn folding_sees_through_leet_separators_and_the_reading_of_one() {
        assert_eq!(
            fold("m4r14.g0nz4l3z@3x4mpl3.0rg"),
            fold("maria.gonzalez@example.org")
        );
        assert_eq!(fold("john smith"), fold("j0hn_sm1th"));
        assert_eq!(fold("1ila"), "iiia");
        assert_eq!(fold("grüße"), "grüße");
        assert_ne!(fold("maria"), fold("marta"));
    }
}
