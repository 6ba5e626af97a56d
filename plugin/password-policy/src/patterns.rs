//! Repetitive and sequential passwords: `aaaaaaaa`, `abcabcabc`, `12345678`, `qwertyuiop`.

/// Keyboard rows (and the digit row) whose runs count as sequential, in either direction.
/// The first two run on from one row to the next (`qwertyuiopasdfgh`).
const KEYBOARD_ROWS: [&str; 8] = [
    "1234567890qwertyuiopasdfghjklzxcvbnm",
    "qwertzuiopasdfghjklyxcvbnm",
    "1234567890",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "qwertzuiop",
    "azertyuiop",
];

/// True when the password is one short unit repeated: `aaaaaaaa`, `abababab`, `abcabcabc`
/// (a unit of at most 4 characters, or any unit repeated at least 3 times).
pub fn is_repetitive(key: &str) -> bool {
    let chars: Vec<char> = key.chars().collect();
    let len = chars.len();
    if len < 2 {
        return false;
    }
    (1..=len / 2).any(|period| {
        len.is_multiple_of(period)
            && (period <= 4 || len / period >= 3)
            && chars
                .iter()
                .enumerate()
                .skip(period)
                .all(|(i, c)| *c == chars[i - period])
    })
}

/// The units `key` is made of when it is one unit written two or more times in a row, shortest
/// first: `passwordpassword` → `password`; `blahblahblahblah` → `blah`, `blahblah`. Empty for
/// anything else. Whether such a repetition matters depends on the unit (see `rules`): a
/// common password or the user's own name written twice is no harder to guess than once.
pub fn repeated_units(key: &str) -> impl Iterator<Item = &str> {
    let bytes = key.as_bytes();
    let len = bytes.len();
    (1..=len / 2)
        .filter(move |period| len.is_multiple_of(*period) && has_period(bytes, *period))
        .filter_map(move |period| key.get(..period))
}

/// True when every byte equals the one `period` bytes before it. (A UTF-8 text with a byte
/// period is the repetition of a prefix that ends on a character boundary.)
fn has_period(bytes: &[u8], period: usize) -> bool {
    bytes.get(period..) == bytes.get(..bytes.len() - period)
}

/// True when the whole password walks a sequence: consecutive code points up or down
/// (`abcdefgh`, `87654321`), or neighbouring keys along a keyboard row (`qwertyuiop`,
/// `1234567890123`, with the digit row wrapping around).
pub fn is_sequential(key: &str) -> bool {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 3 {
        return false;
    }
    let steps_by = |delta: i64| {
        chars
            .windows(2)
            .all(|pair| i64::from(u32::from(pair[1])) - i64::from(u32::from(pair[0])) == delta)
    };
    if steps_by(1) || steps_by(-1) {
        return true;
    }
    KEYBOARD_ROWS
        .iter()
        .any(|row| walks_row(&chars, row, 1) || walks_row(&chars, row, -1))
}

/// Every next character is the neighbour (by `direction`) of the previous one on `row`;
/// the row wraps around so that `1234567890123` counts.
fn walks_row(chars: &[char], row: &str, direction: isize) -> bool {
    let row = row.as_bytes();
    let len = row.len() as isize;
    chars.windows(2).all(|pair| {
        let (Ok(this), Ok(next)) = (u8::try_from(pair[0]), u8::try_from(pair[1])) else {
            return false;
        };
        let Some(at) = row.iter().position(|c| *c == this) else {
            return false;
        };
        row[(at as isize + direction).rem_euclid(len) as usize] == next
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition() {
        assert!(is_repetitive("aaaaaaaaaaaaaaaa"));
        assert!(is_repetitive("abababababababab"));
        assert!(is_repetitive("abcabcabcabcabc"));
        assert!(is_repetitive("horsehorsehorse"));
        assert!(!is_repetitive("correct horse battery"));
        assert!(!is_repetitive("horsehorse-staple"));
    }

    #[test]
    fn repeated_units_are_every_unit_written_twice_or_more() {
        fn units(key: &str) -> Vec<&str> {
            repeated_units(key).collect()
        }
        assert_eq!(units("passwordpassword"), ["password"]);
        assert_eq!(units("blahblahblahblah"), ["blah", "blahblah"]);
        assert_eq!(units("aaaa"), ["a", "aa"]);
        assert_eq!(units("grüßegrüße"), ["grüße"]);
        assert!(units("passwordpasswor").is_empty());
        assert!(units("correct horse battery staple").is_empty());
        assert!(units("x").is_empty());
        assert!(units("").is_empty());
    }

    #[test]
    fn sequences() {
        assert!(is_sequential("abcdefghijklmnop"));
        assert!(is_sequential("12345678"));
        assert!(is_sequential("987654321"));
        assert!(is_sequential("qwertyuiop"));
        assert!(is_sequential("poiuytrewq"));
        assert!(is_sequential("1234567890123456"));
        assert!(is_sequential("qwertyuiopasdfghjkl"));
        assert!(is_sequential("αβγδεζηθ"));
        assert!(!is_sequential("correct horse battery"));
        assert!(!is_sequential("qwertyasdfgh"));
    }
}
