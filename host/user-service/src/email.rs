//! Email addresses: one canonical form per mailbox, so an address registers once however it is
//! typed.
//!
//! The canonical form is the address in Unicode NFC with its local part lower-cased (local parts
//! are compared case-insensitively, as they always were here) and its domain converted to ASCII
//! by IDNA (UTS #46, strict: STD3 rules, hyphen checks, DNS lengths), which also lower-cases and
//! maps it. `josé@bücher.de` typed in NFC or NFD, and `josé@xn--bcher-kva.de`, all become
//! `josé@xn--bcher-kva.de`. The address as typed is kept alongside it for display.
//!
//! Refused: bidirectional controls and other invisible format characters (Unicode `Cf`, e.g.
//! U+202E), control characters and whitespace anywhere; IP-literal domains (`a@[127.0.0.1]`) and
//! numeric ones (`a@127.0.0.1`); domains without a dot; empty or over-long parts.

use unicode_normalization::UnicodeNormalization;

/// Longest canonical address, in bytes (RFC 5321's path limit less the angle brackets).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest canonical local part, in bytes (RFC 5321).
pub const MAX_LOCAL_BYTES: usize = 64;

/// An address in canonical form, with what was typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The one stored and compared form.
    pub canonical: String,
    /// The address as typed (trimmed of surrounding whitespace), for display only.
    pub display: String,
}

/// Why an address was refused (the text is safe to show to the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("the address must have exactly one `@` with text on both sides")]
    /// Not `local@domain`.
    Shape,
    #[error("the address contains an invisible, control, bidirectional or space character")]
    /// A character no address may hold.
    ForbiddenCharacter,
    #[error("IP-address domains are not accepted")]
    /// The domain is an IP literal.
    IpLiteral,
    #[error("the domain must be a dotted domain name")]
    /// The domain has no dot.
    NoDot,
    #[error("the domain is not a valid internationalised domain name")]
    /// The domain is not a valid (IDNA) host name.
    InvalidDomain,
    #[error("the local part is longer than 64 bytes or the address longer than 254")]
    /// Longer than the limits.
    TooLong,
}

/// Canonicalises `typed` (see the module documentation).
pub fn canonicalize(typed: &str) -> Result<Email, EmailError> {
    let display = typed.trim();
    if display.chars().any(is_forbidden) {
        return Err(EmailError::ForbiddenCharacter);
    }
    let normalized: String = display.nfc().collect();
    let (local, domain) = normalized.rsplit_once('@').ok_or(EmailError::Shape)?;
    if local.is_empty() || domain.is_empty() || local.contains('@') {
        return Err(EmailError::Shape);
    }
    if domain.starts_with('[') || domain.ends_with(']') {
        return Err(EmailError::IpLiteral);
    }
    let local: String = local.to_lowercase().nfc().collect();
    let domain = idna::domain_to_ascii_strict(domain).map_err(|_| EmailError::InvalidDomain)?;
    let Some((_, top_level)) = domain.rsplit_once('.') else {
        return Err(EmailError::NoDot);
    };
    // `127.0.0.1`, `0x7f.1` and the like: a numeric last label is an IPv4 address, not a name.
    if top_level.is_empty()
        || top_level.bytes().all(|byte| byte.is_ascii_digit())
        || top_level.starts_with("0x")
    {
        return Err(EmailError::IpLiteral);
    }
    let canonical = format!("{local}@{domain}");
    if local.len() > MAX_LOCAL_BYTES || canonical.len() > MAX_EMAIL_BYTES {
        return Err(EmailError::TooLong);
    }
    Ok(Email {
        canonical,
        display: display.to_owned(),
    })
}

/// Characters no address may contain: controls, whitespace (including line and paragraph
/// separators), and the invisible format characters (general category `Cf`), among them every
/// bidirectional control.
fn is_forbidden(c: char) -> bool {
    c.is_control() || c.is_whitespace() || is_format(c)
}

/// Unicode general category `Cf` (format), Unicode 15.1.
fn is_format(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(typed: &str) -> Result<String, EmailError> {
        canonicalize(typed).map(|email| email.canonical)
    }

    #[test]
    fn one_mailbox_one_form() {
        let nfc = "jos\u{e9}@b\u{fc}cher.de";
        let nfd = "jose\u{301}@bu\u{308}cher.de";
        let ascii = "jos\u{e9}@xn--bcher-kva.de";
        let upper = "JOS\u{c9}@B\u{dc}CHER.DE";
        let expected = Ok("jos\u{e9}@xn--bcher-kva.de".to_owned());
        for typed in [nfc, nfd, ascii, upper] {
            assert_eq!(canonical(typed), expected, "{typed:?}");
        }
        assert_eq!(canonicalize(nfd).unwrap().display, nfd);
        assert_eq!(
            canonical("  Maria@Example.org "),
            Ok("maria@example.org".to_owned())
        );
    }

    #[test]
    fn what_is_refused() {
        for (typed, error) in [
            ("a\u{202e}b@example.org", EmailError::ForbiddenCharacter),
            ("ab@exa\u{200b}mple.org", EmailError::ForbiddenCharacter),
            ("a b@example.org", EmailError::ForbiddenCharacter),
            ("a\u{0}@example.org", EmailError::ForbiddenCharacter),
            ("a@[127.0.0.1]", EmailError::IpLiteral),
            ("a@[IPv6:::1]", EmailError::IpLiteral),
            ("a@127.0.0.1", EmailError::IpLiteral),
            ("a@localhost", EmailError::NoDot),
            ("", EmailError::Shape),
            ("a@", EmailError::Shape),
            ("@example.org", EmailError::Shape),
            ("a@b@example.org", EmailError::Shape),
            ("a@exa_mple.org", EmailError::InvalidDomain),
            ("a@-example.org", EmailError::InvalidDomain),
            ("a@example..org", EmailError::InvalidDomain),
            ("a@example.org.", EmailError::InvalidDomain),
        ] {
            assert_eq!(canonical(typed), Err(error), "{typed:?}");
        }
        assert_eq!(
            canonical(&format!("{}@example.org", "a".repeat(65))),
            Err(EmailError::TooLong)
        );
        assert!(canonical(&format!("{}@example.org", "a".repeat(64))).is_ok());
    }
}
