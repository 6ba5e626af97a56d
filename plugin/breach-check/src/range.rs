//! Tolerant parsing of a range response: `SUFFIX:COUNT` lines, CRLF or LF, any case, junk lines
//! ignored, count-0 padding lines dropped.

/// The result of looking a suffix up in a range response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeLookup {
    Found(u64),
    /// The response is well formed and the suffix is not in it.
    Absent,
    /// Not a single valid line: not a range response at all.
    Unparseable,
}

/// Looks `suffix` (35 hex characters) up in `body`.
pub fn find_count(body: &str, suffix: &str) -> RangeLookup {
    let mut valid_lines = 0usize;
    for line in body.split('\n') {
        let Some((candidate, count)) = line.trim().split_once(':') else {
            continue;
        };
        let candidate = candidate.trim();
        if candidate.len() != 35 || !candidate.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            continue;
        }
        let Ok(count) = count.trim().parse::<u64>() else {
            continue;
        };
        valid_lines += 1;
        if count > 0 && candidate.eq_ignore_ascii_case(suffix) {
            return RangeLookup::Found(count);
        }
    }
    if valid_lines == 0 {
        RangeLookup::Unparseable
    } else {
        RangeLookup::Absent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUFFIX: &str = "1E4C9B93F3F0682250B6CF8331B7EE68FD8";

    #[test]
    fn finds_the_suffix_whatever_the_line_endings_and_case() {
        let body = format!(
            "0018A45C4D1DEF81644B54AB7F969B88D65:1\r\n{}:9545824\r\n",
            SUFFIX.to_lowercase()
        );
        assert_eq!(find_count(&body, SUFFIX), RangeLookup::Found(9545824));
        let body = format!("0018A45C4D1DEF81644B54AB7F969B88D65:1\n{SUFFIX}:3");
        assert_eq!(find_count(&body, SUFFIX), RangeLookup::Found(3));
    }

    #[test]
    fn padding_and_junk_are_ignored() {
        let body =
            format!("<html>\n{SUFFIX}:0\nnot:a:line\n0018A45C4D1DEF81644B54AB7F969B88D65:2\n");
        assert_eq!(
            find_count(&body, SUFFIX),
            RangeLookup::Absent,
            "a count-0 line is padding, not a hit"
        );
        assert_eq!(
            find_count("<html>oops</html>", SUFFIX),
            RangeLookup::Unparseable
        );
        assert_eq!(find_count("", SUFFIX), RangeLookup::Unparseable);
    }
}
