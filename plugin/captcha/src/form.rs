//! `application/x-www-form-urlencoded` encoding of the siteverify request.

/// Percent-encodes one form value (RFC 3986 unreserved characters stay as they are).
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Joins fields as `name=value&...`. Values marked raw are inserted as they are: they are secret
/// placeholders the host replaces, which must reach it intact.
pub fn build(fields: &[(&str, &str, bool)]) -> String {
    fields
        .iter()
        .map(|(name, value, raw)| {
            if *raw {
                format!("{name}={value}")
            } else {
                format!("{name}={}", encode(value))
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_values_but_not_placeholders() {
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(
            build(&[("secret", "{{secret:x}}", true), ("response", "t o", false)]),
            "secret={{secret:x}}&response=t%20o"
        );
    }
}
