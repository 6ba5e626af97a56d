//! The embedded list of common passwords (see `data/common-passwords.txt` for its source).

include!(concat!(env!("OUT_DIR"), "/common_passwords.rs"));

/// True when `candidate` (already normalised and lower-cased) is a common password.
pub fn is_common_password(candidate: &str) -> bool {
    COMMON_PASSWORDS.binary_search(&candidate).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_classics_and_not_a_passphrase() {
        assert!(COMMON_PASSWORDS.len() > 10_000);
        assert!(is_common_password("password"));
        assert!(is_common_password("qwertyuiop"));
        assert!(is_common_password("iloveyou1"));
        assert!(!is_common_password("correct horse battery staple"));
    }
}
