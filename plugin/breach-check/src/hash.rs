//! SHA-1 split for the range API: a 5-character prefix that is sent, a 35-character suffix that
//! never leaves the plugin.

use sha1::{Digest, Sha1};

/// Upper-case hex SHA-1 of `password`, split into (prefix of 5, suffix of 35).
pub fn prefix_and_suffix(password: &str) -> (String, String) {
    let digest = Sha1::digest(password.as_bytes());
    let mut hex = String::with_capacity(40);
    for byte in digest {
        hex.push(char::from(b"0123456789ABCDEF"[usize::from(byte >> 4)]));
        hex.push(char::from(b"0123456789ABCDEF"[usize::from(byte & 0xf)]));
    }
    let suffix = hex.split_off(5);
    (hex, suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // SHA-1("password") = 5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8
        assert_eq!(
            prefix_and_suffix("password"),
            (
                "5BAA6".to_owned(),
                "1E4C9B93F3F0682250B6CF8331B7EE68FD8".to_owned()
            )
        );
    }
}
