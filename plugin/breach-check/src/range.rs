//! Looking a suffix up in a range response: `SUFFIX:COUNT` lines, CRLF or LF, any case, junk
//! lines ignored, count-0 padding lines dropped.
//!
//! A real answer (`Add-Padding: true`) has 800–1,000 lines, about 30 KB, sorted by suffix. The
//! lookup leans on that order: a binary search over the body's bytes that reads about ten
//! lines of ~40 bytes instead of all of them, then parses the few lines of the window left.
//! Everything the line-by-line reading tolerates still holds inside it: either case, CRLF or
//! LF, whitespace around the parts, junk lines anywhere (a probe that lands on one reads on to
//! the next valid line), padding. The answer is exactly that of parsing every line for any
//! body sorted by suffix, case ignored (a test checks this on thousands of generated messy
//! bodies); for a body that is not, the search falls back to the line-by-line scan whenever a
//! probe reveals the disorder, and otherwise answers from the lines the order points at. An
//! upstream that sends an unsorted range is answering wrongly anyway: it could as well have
//! left the line out.
//!
//! The line-by-line scan (small bodies, suffixes that are not 35 hex characters, and the
//! fallbacks) leans on the usual shape too (35 hex characters, `:`, a count): at the start of
//! a line it looks at the 36th byte, and when it is the `:` it compares the first 35 bytes with
//! the suffix (a mismatch shows in the first byte or two) and skips to the line break. Only
//! lines of another shape and a matching line go through the tolerant parser, [`parse_line`].

use std::cmp::Ordering;

/// Hex characters in a suffix: the 40 of a SHA-1 less the 5-character prefix sent in the URL.
pub const SUFFIX_LEN: usize = 35;

/// Below this many bytes the binary search stops and the window is read line by line (about a
/// dozen lines of a real range).
const LINEAR_WINDOW_BYTES: usize = 512;

/// The result of looking a suffix up in a range response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeLookup {
    /// Seen this many times.
    Found(u64),
    /// The response is well formed and the suffix is not in it.
    Absent,
    /// Not a single valid line: not a range response at all.
    Unparseable,
}

/// Looks `suffix` (35 hex characters, any case) up in `body` (the raw response bytes, or text).
pub fn find_count(body: impl AsRef<[u8]>, suffix: &str) -> RangeLookup {
    let body = body.as_ref();
    let suffix = suffix.as_bytes();
    match upper_case_key(suffix) {
        Some(key) if key.iter().all(u8::is_ascii_hexdigit) => {
            search_sorted(body, &key).unwrap_or_else(|| find_line_by_line(body, &key))
        }
        // No valid line can hold it: the scan only has to tell Absent from Unparseable.
        _ => find_line_by_line(body, suffix),
    }
}

/// `suffix` in upper case, when it has the length of one; the key the search compares.
fn upper_case_key(suffix: &[u8]) -> Option<[u8; SUFFIX_LEN]> {
    let mut key = <[u8; SUFFIX_LEN]>::try_from(suffix).ok()?;
    key.make_ascii_uppercase();
    Some(key)
}

/// One valid line found by a probe: where it starts, where it ends (its `\n`, or the body's
/// end), its suffix in upper case and its count.
struct ProbedLine {
    start: usize,
    end: usize,
    key: [u8; SUFFIX_LEN],
    count: u64,
}

/// The binary search over a body sorted by suffix. `None` when it cannot answer: the body has
/// no valid line where the probes looked, a probe saw lines out of order, or the suffix sits
/// on a padding line (the full scan then decides whether a counted duplicate follows).
fn search_sorted(body: &[u8], key: &[u8; SUFFIX_LEN]) -> Option<RangeLookup> {
    // Invariant: every line that can hold `key` starts in `low..high`; `low` is a line start.
    let (mut low, mut high) = (0, body.len());
    // The keys the bounds were set from: in a sorted body every later probe lies between them.
    let (mut low_key, mut high_key): (Option<[u8; SUFFIX_LEN]>, Option<[u8; SUFFIX_LEN]>) =
        (None, None);
    let mut seen_valid_line = false;
    while high - low > LINEAR_WINDOW_BYTES {
        let middle = low + (high - low) / 2;
        // The first line that starts after `middle` (`middle` itself may be inside a line).
        let next = line_end(body, middle) + 1;
        if next >= high {
            // No line starts in `middle + 1..high`: the candidates start at or before `middle`.
            high = middle + 1;
            continue;
        }
        let Some(line) = first_valid_line(body, next, high) else {
            // Only junk from `next` to `high`.
            high = next;
            continue;
        };
        seen_valid_line = true;
        let out_of_order = low_key.is_some_and(|bound| line.key < bound)
            || high_key.is_some_and(|bound| line.key > bound);
        if out_of_order {
            return None;
        }
        match line.key.cmp(key) {
            Ordering::Less => {
                // A line that starts before `high` may run past it (or end the body).
                low = (line.end + 1).min(high);
                low_key = Some(line.key);
            }
            Ordering::Greater => {
                high = line.start;
                high_key = Some(line.key);
            }
            // A hit; an earlier line of the window may hold the same suffix, and the first
            // counted one is the answer, as in a full reading.
            Ordering::Equal if line.count > 0 => {
                return Some(match find_line_by_line(&body[low..line.start], key) {
                    found @ RangeLookup::Found(_) => found,
                    _ => RangeLookup::Found(line.count),
                });
            }
            Ordering::Equal => return None,
        }
    }
    // The lines that start in `low..high`, each to its end.
    let end = if high > low {
        line_end(body, high - 1)
    } else {
        low
    };
    match find_line_by_line(&body[low..end], key) {
        RangeLookup::Unparseable if !seen_valid_line => None,
        RangeLookup::Unparseable => Some(RangeLookup::Absent),
        answer => Some(answer),
    }
}

/// The first valid line that starts in `from..before` (`from` a line start).
fn first_valid_line(body: &[u8], mut from: usize, before: usize) -> Option<ProbedLine> {
    while from < before {
        let end = line_end(body, from);
        if let Some((candidate, count)) = parse_line(&body[from..end]) {
            return Some(ProbedLine {
                start: from,
                end,
                key: upper_case_key(candidate)?,
                count,
            });
        }
        from = end + 1;
    }
    None
}

/// The lookup in any body, line by line (see the module's documentation).
fn find_line_by_line(body: &[u8], suffix: &[u8]) -> RangeLookup {
    let mut seen_valid_line = false;
    let mut start = 0;
    while start < body.len() {
        let end = if let Some(candidate) = fixed_width_candidate(body, start) {
            let end = line_end(body, start + SUFFIX_LEN + 1);
            if worth_parsing(candidate, suffix, seen_valid_line)
                && let Some(found) = judge_line(&body[start..end], suffix, &mut seen_valid_line)
            {
                return found;
            }
            end
        } else {
            let end = line_end(body, start);
            if let Some(found) = judge_line(&body[start..end], suffix, &mut seen_valid_line) {
                return found;
            }
            end
        };
        start = end + 1;
    }
    if seen_valid_line {
        RangeLookup::Absent
    } else {
        RangeLookup::Unparseable
    }
}

/// The first 35 bytes of the line starting at `start` when the byte after them is the `:`,
/// which is the shape of (almost) every line of a range.
///
/// Skipping from such a line to the line break after its `:` never skips a valid line: if a
/// line break came before the `:`, every line from `start` to the one holding that `:` is
/// shorter than 35 characters or has a `:` within its first 35, so none of them is valid.
fn fixed_width_candidate(body: &[u8], start: usize) -> Option<&[u8]> {
    match body.get(start + SUFFIX_LEN) {
        Some(b':') => body.get(start..start + SUFFIX_LEN),
        _ => None,
    }
}

/// Whether a well-shaped line can change the answer: it matches the suffix, or it is the
/// first one that may be valid (a range needs one valid line). Any other line is skipped.
fn worth_parsing(candidate: &[u8], suffix: &[u8], seen_valid_line: bool) -> bool {
    candidate.eq_ignore_ascii_case(suffix)
        || (!seen_valid_line && candidate.iter().all(u8::is_ascii_hexdigit))
}

/// The index of the first `\n` at or after `from`, or the body's length.
fn line_end(body: &[u8], from: usize) -> usize {
    body.get(from..)
        .and_then(|rest| rest.iter().position(|byte| *byte == b'\n'))
        .map_or(body.len(), |offset| from + offset)
}

/// Parses one line; notes that a valid line was seen; a hit with a count above 0 (padding
/// lines have 0) is the answer.
fn judge_line(line: &[u8], suffix: &[u8], seen_valid_line: &mut bool) -> Option<RangeLookup> {
    let (candidate, count) = parse_line(line)?;
    *seen_valid_line = true;
    (count > 0 && candidate.eq_ignore_ascii_case(suffix)).then_some(RangeLookup::Found(count))
}

/// The tolerant reading of one line (without its `\n`): surrounding whitespace (a `\r`
/// included) ignored, 35 hex characters of any case, `:`, a decimal count. `None` for anything
/// else, such as an HTML error page's lines or bytes that are not UTF-8.
pub fn parse_line(line: &[u8]) -> Option<(&[u8], u64)> {
    let line = std::str::from_utf8(line).ok()?;
    let (candidate, count) = line.trim().split_once(':')?;
    let candidate = candidate.trim();
    if candidate.len() != SUFFIX_LEN || !candidate.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    let count = count.trim().parse::<u64>().ok()?;
    Some((candidate.as_bytes(), count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const SUFFIX: &str = "1E4C9B93F3F0682250B6CF8331B7EE68FD8";

    #[test]
    fn finds_the_suffix_whatever_the_line_endings_and_case() {
        let body = format!(
            "0018A45C4D1DEF81644B54AB7F969B88D65:1\r\n{}:9545824\r\n",
            SUFFIX.to_lowercase()
        );
        assert_eq!(find_count(&body, SUFFIX), RangeLookup::Found(9_545_824));
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

    #[test]
    fn odd_shapes_still_count() {
        // Spaces around the parts, mixed case, a trailing line without its break.
        let mixed = "1e4C9b93F3F0682250b6CF8331B7EE68FD8";
        let body = format!("junk\r\n  {mixed} : 12 \r\n");
        assert_eq!(find_count(&body, SUFFIX), RangeLookup::Found(12));
        // A well-shaped line whose count is not a number is junk, not a hit.
        let body = format!("{SUFFIX}:many\r\n0018A45C4D1DEF81644B54AB7F969B88D65:2");
        assert_eq!(find_count(&body, SUFFIX), RangeLookup::Absent);
        // Only junk of the right shape: not a range.
        let body = format!(
            "{}:x\r\nzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz:1",
            "G".repeat(35)
        );
        assert_eq!(find_count(&body, SUFFIX), RangeLookup::Unparseable);
        // Bytes that are not UTF-8 on a junk line do not hide the rest.
        let mut body = b"\xff\xfe junk\n".to_vec();
        body.extend_from_slice(format!("{SUFFIX}:7\n").as_bytes());
        assert_eq!(find_count(&body, SUFFIX), RangeLookup::Found(7));
    }

    #[test]
    fn a_short_line_before_a_colon_at_the_fixed_width_hides_nothing() {
        // The 36th byte from the first line's start is a ':' of a later, shorter line.
        let body = format!("abc\n{}:1\n{SUFFIX}:5\n", "0".repeat(31));
        assert_eq!(body.as_bytes()[SUFFIX_LEN], b':');
        assert_eq!(find_count(&body, SUFFIX), RangeLookup::Found(5));
    }

    /// A deterministic generator (SplitMix64): realistic bodies without a dependency.
    struct SplitMix(u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }

        fn suffix(&mut self) -> String {
            (0..SUFFIX_LEN)
                .map(|_| char::from(b"0123456789ABCDEF"[self.below(16) as usize]))
                .collect()
        }
    }

    /// A range like the real one with `Add-Padding`: `lines` sorted CRLF lines, about a third
    /// of them count-0 padding, plus `extra` lines placed where sorting puts them.
    fn realistic_body(seed: u64, lines: usize, extra: &[(&str, u64)]) -> (String, Vec<String>) {
        let mut random = SplitMix(seed);
        let mut entries: Vec<(String, u64)> = (0..lines - extra.len())
            .map(|index| {
                let count = if index % 3 == 0 {
                    0
                } else {
                    1 + random.below(5_000)
                };
                (random.suffix(), count)
            })
            .collect();
        entries.extend(
            extra
                .iter()
                .map(|(suffix, count)| ((*suffix).to_owned(), *count)),
        );
        entries.sort();
        let lines: Vec<String> = entries
            .iter()
            .map(|(suffix, count)| format!("{suffix}:{count}"))
            .collect();
        (lines.join("\r\n"), lines)
    }

    /// The suffix and count on line `index` of a body made by [`realistic_body`].
    fn entry(lines: &[String], index: usize) -> (String, u64) {
        let (suffix, count) = lines[index].split_once(':').expect("generated line");
        (suffix.to_owned(), count.parse().expect("generated count"))
    }

    #[test]
    fn a_realistic_body_answers_at_the_start_middle_and_end() {
        let (body, lines) = realistic_body(18, 900, &[]);
        assert_eq!(lines.len(), 900);
        assert!(
            (25_000..40_000).contains(&body.len()),
            "{} bytes",
            body.len()
        );
        for index in [0, 1, 450, 686, 898, 899] {
            let (suffix, count) = entry(&lines, index);
            let expected = if count == 0 {
                RangeLookup::Absent
            } else {
                RangeLookup::Found(count)
            };
            assert_eq!(find_count(&body, &suffix), expected, "line {index}");
            assert_eq!(
                find_count(&body, &suffix.to_lowercase()),
                expected,
                "line {index}, lower-case suffix"
            );
        }
    }

    #[test]
    fn a_realistic_body_finds_hits_at_its_edges_and_misses_the_rest() {
        let first = "00000000000000000000000000000000001";
        let last = "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFE";
        let (body, lines) = realistic_body(7, 900, &[(first, 3), (last, 99), (SUFFIX, 42)]);
        assert_eq!(lines[0], format!("{first}:3"));
        assert_eq!(lines[899], format!("{last}:99"));
        assert_eq!(find_count(&body, first), RangeLookup::Found(3));
        assert_eq!(find_count(&body, last), RangeLookup::Found(99));
        assert_eq!(find_count(&body, SUFFIX), RangeLookup::Found(42));
        assert_eq!(
            find_count(&body, "0000000000000000000000000000000000F"),
            RangeLookup::Absent
        );
        assert_eq!(
            find_count(&body, &"A".repeat(SUFFIX_LEN)),
            RangeLookup::Absent
        );
        // The same body with LF only, and in lower case.
        let lf = body.replace("\r\n", "\n");
        assert_eq!(find_count(&lf, last), RangeLookup::Found(99));
        assert_eq!(
            find_count(lf.to_lowercase(), SUFFIX),
            RangeLookup::Found(42)
        );
    }

    #[test]
    fn a_padding_line_of_a_realistic_body_is_not_a_breach() {
        let (body, lines) = realistic_body(11, 900, &[(SUFFIX, 0)]);
        assert!(lines.contains(&format!("{SUFFIX}:0")));
        assert_eq!(find_count(&body, SUFFIX), RangeLookup::Absent);
    }

    /// The previous implementation, parsing every line; the reference the fast one must match.
    fn find_count_parsing_every_line(body: &str, suffix: &str) -> RangeLookup {
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

    /// One line of a messy body: valid in various shapes, padding, or junk of many kinds.
    fn messy_line(random: &mut SplitMix, suffix: &str) -> String {
        let target = if random.below(4) == 0 {
            suffix.to_owned()
        } else {
            random.suffix()
        };
        match random.below(12) {
            0 => format!("{target}:0"),
            1 => format!("{}:{}", target.to_lowercase(), random.below(9)),
            2 => format!("  {target} :\t{} ", random.below(9)),
            3 => format!("{target}:"),
            4 => format!("{target}:x{}", random.below(9)),
            5 => format!("{}:{}", &target[1..], random.below(9)),
            6 => format!("{target}0:{}", random.below(9)),
            7 => "<html>".to_owned(),
            8 => String::new(),
            9 => format!("{}:{}", &target[..20], random.below(9)),
            10 => format!("{target}:{}\r", random.below(9)),
            _ => format!("{target}:{}", random.below(9)),
        }
    }

    /// `count` messy lines with `suffix` among them; sorted by suffix (case ignored) when
    /// `sorted`, as a real range is.
    fn messy_body(random: &mut SplitMix, count: usize, suffix: &str, sorted: bool) -> String {
        let mut lines: Vec<String> = (0..count).map(|_| messy_line(random, suffix)).collect();
        if sorted {
            // A valid line's trimmed text starts with its suffix, so this sorts valid lines by
            // suffix, with the junk lines scattered among them.
            lines.sort_by_key(|line| line.trim().to_ascii_uppercase());
        }
        let separator = if random.below(2) == 0 { "\n" } else { "\r\n" };
        lines.join(separator)
    }

    #[test]
    fn small_bodies_in_any_order_agree_with_parsing_every_line() {
        let mut random = SplitMix(2024);
        for round in 0..5_000 {
            let lines = random.below(8) as usize;
            let body = messy_body(&mut random, lines, SUFFIX, false);
            assert_eq!(
                find_count(&body, SUFFIX),
                find_count_parsing_every_line(&body, SUFFIX),
                "round {round}: {body:?}"
            );
        }
    }

    #[test]
    fn sorted_messy_bodies_agree_with_parsing_every_line() {
        let mut random = SplitMix(1865);
        let mut answered_by_the_search = 0;
        let rounds = 2_000;
        for round in 0..rounds {
            let lines = 20 + random.below(700) as usize;
            // The suffix is the target on a quarter of the lines; pick sometimes a suffix that
            // is elsewhere or nowhere, in either case.
            let target = match random.below(4) {
                0 => random.suffix(),
                1 => SUFFIX.to_lowercase(),
                _ => SUFFIX.to_owned(),
            };
            let body = messy_body(&mut random, lines, SUFFIX, true);
            let key = upper_case_key(target.as_bytes()).expect("35 bytes");
            answered_by_the_search += usize::from(search_sorted(body.as_bytes(), &key).is_some());
            assert_eq!(
                find_count(&body, &target),
                find_count_parsing_every_line(&body, &target),
                "round {round}: {target} in {body:?}"
            );
        }
        // The binary search itself answered most of them (the rest: a padding line holding the
        // suffix, where the full scan decides).
        assert!(
            answered_by_the_search > rounds / 2,
            "the search answered {answered_by_the_search} of {rounds}"
        );
    }

    #[test]
    fn realistic_bodies_are_answered_by_the_binary_search() {
        let (body, lines) = realistic_body(5, 900, &[]);
        for index in (0..900).step_by(7) {
            let (suffix, count) = entry(&lines, index);
            let key = upper_case_key(suffix.as_bytes()).expect("35 bytes");
            let answer = search_sorted(body.as_bytes(), &key);
            if count == 0 {
                // A padding line: absent, or left to the full scan when a probe lands on it.
                assert!(
                    matches!(answer, None | Some(RangeLookup::Absent)),
                    "line {index}: {answer:?}"
                );
            } else {
                assert_eq!(answer, Some(RangeLookup::Found(count)), "line {index}");
            }
        }
        let miss = upper_case_key(b"0123456789ABCDEF0123456789ABCDEF012").expect("35 bytes");
        assert_eq!(
            search_sorted(body.as_bytes(), &miss),
            Some(RangeLookup::Absent)
        );
    }

    #[test]
    fn a_body_out_of_order_is_read_line_by_line() {
        // Sorted the wrong way round: the second probe sees it and the full scan answers.
        let (_, lines) = realistic_body(23, 900, &[(SUFFIX, 8)]);
        let reversed: Vec<&str> = lines.iter().rev().map(String::as_str).collect();
        let reversed = reversed.join("\r\n");
        assert_eq!(find_count(&reversed, SUFFIX), RangeLookup::Found(8));
        for index in [0, 300, 899] {
            let (suffix, count) = entry(&lines, index);
            assert_eq!(
                find_count(&reversed, &suffix),
                find_count_parsing_every_line(&reversed, &suffix),
                "line {index} (count {count})"
            );
        }
    }

    /// Median time of `run` over many calls.
    fn median(mut run: impl FnMut() -> RangeLookup) -> Duration {
        let mut samples: Vec<Duration> = (0..20_000)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(run());
                started.elapsed()
            })
            .collect();
        samples.sort_unstable();
        samples[samples.len() / 2]
    }

    /// `cargo test --release -p breach-check -- --ignored --nocapture range_timing`
    #[test]
    #[ignore = "a timing measurement, not a check"]
    fn range_timing() {
        let (body, lines) = realistic_body(18, 900, &[]);
        // The first line at or after `index` that is not padding: (its number, its suffix).
        let counted_from = |index: usize| {
            (index..lines.len())
                .map(|index| (index + 1, entry(&lines, index)))
                .find(|(_, (_, count))| *count > 0)
                .map(|(number, (suffix, _))| (number, suffix))
                .expect("a counted line")
        };
        let cases = [
            ("start", counted_from(0)),
            ("middle", counted_from(685)),
            ("end", counted_from(880)),
        ];
        let miss = "0123456789ABCDEF0123456789ABCDEF012";
        let mut runs: Vec<(String, &str)> = cases
            .iter()
            .map(|(name, (number, suffix))| {
                (
                    format!("hit at the {name} (line {number})"),
                    suffix.as_str(),
                )
            })
            .collect();
        runs.push(("miss".to_owned(), miss));
        for (name, suffix) in runs {
            let old = median(|| find_count_parsing_every_line(&body, suffix));
            let new = median(|| find_count(body.as_bytes(), suffix));
            println!(
                "900 lines, {} bytes, {name}: every line parsed {old:?}, binary search {new:?}",
                body.len()
            );
        }
    }
}
