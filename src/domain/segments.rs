//! SMS segment counting (SPEC §6).
//!
//! Every API request is priced and validated by how many segments its text takes, so the
//! count must match what carriers bill: GSM-7 when every character is in the GSM 03.38
//! basic or extension table, UCS-2 otherwise, with no national shift tables and no silent
//! transliteration. Multipart messages lose room to the concatenation header, and a part
//! boundary never falls inside an ESC pair, a surrogate pair or a grapheme cluster.

use unicode_segmentation::UnicodeSegmentation;

const GSM7_SINGLE: u32 = 160;
const GSM7_PART: u32 = 153;
const UCS2_SINGLE: u32 = 70;
const UCS2_PART: u32 = 67;

/// How the text is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Encoding {
    /// GSM 03.38 default alphabet plus its extension table, 7 bits per septet.
    #[serde(rename = "GSM-7")]
    Gsm7,
    /// UTF-16 code units, 16 bits each.
    #[serde(rename = "UCS-2")]
    Ucs2,
}

impl Encoding {
    /// The name used in the API and in the reference cases.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gsm7 => "GSM-7",
            Self::Ucs2 => "UCS-2",
        }
    }
}

/// What a text costs as one SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    /// The encoding the whole text is sent in.
    pub encoding: Encoding,
    /// How many parts the message is sent as (1 for the empty text).
    pub count: u32,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2) of the whole text.
    pub units: u32,
}

/// Septets an ASCII byte costs, 0 when it is not GSM-7: the backtick and the controls other
/// than LF, CR and form feed are missing from GSM 03.38, where ESC only exists as the prefix
/// of an extension pair (so a literal U+001B forces UCS-2).
const fn ascii_septets(b: u8) -> u8 {
    match b {
        b'\n' | b'\r' | b' '..=b'Z' | b'_' | b'a'..=b'z' => 1,
        0x0C | b'^' | b'{' | b'}' | b'\\' | b'[' | b'~' | b']' | b'|' => 2,
        _ => 0,
    }
}

/// [`ascii_septets`] for every byte value (0 from 0x80 up), so any `u8` finds its entry; the
/// lookup makes the all-ASCII scan about three times faster than the `match`.
const ASCII_SEPTETS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut rest: &mut [u8] = &mut table;
    let mut byte: u8 = 0;
    while let [slot, tail @ ..] = rest {
        *slot = ascii_septets(byte);
        byte = byte.wrapping_add(1);
        rest = tail;
    }
    table
};

fn byte_septets(b: u8) -> u8 {
    ASCII_SEPTETS.get(usize::from(b)).copied().unwrap_or(0)
}

/// Septets `c` costs in GSM-7, or `None` when it forces the whole text into UCS-2.
fn gsm7_septets(c: char) -> Option<u32> {
    if let Ok(b) = u8::try_from(c)
        && b.is_ascii()
    {
        return Some(u32::from(byte_septets(b))).filter(|&n| n > 0);
    }
    match c {
        '£' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | 'Ø' | 'ø' | 'Å' | 'å' | 'Δ' | 'Φ' | 'Γ'
        | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß' | 'É' | '¤' | '¡' | 'Ä'
        | 'Ö' | 'Ñ' | 'Ü' | '§' | '¿' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => Some(1),
        '€' => Some(2),
        _ => None,
    }
}

fn utf16_units(c: char) -> u32 {
    if u32::from(c) > 0xFFFF { 2 } else { 1 }
}

/// Greedy filling of fixed-size parts where an indivisible item that does not fit in the
/// current part opens the next one, which is how carriers and Twilio cut a message.
struct Parts {
    capacity: u32,
    count: u32,
    used: u32,
}

impl Parts {
    fn new(capacity: u32) -> Self {
        Self {
            capacity,
            count: 1,
            used: 0,
        }
    }

    fn push(&mut self, width: u32) {
        if self.used > 0 && self.used.saturating_add(width) > self.capacity {
            self.count = self.count.saturating_add(1);
            self.used = 0;
        }
        self.used = self.used.saturating_add(width);
    }
}

/// Counts the segments `text` takes as one SMS.
pub fn count(text: &str) -> Segments {
    let Some(septets) = gsm7_total(text) else {
        return count_ucs2(text);
    };
    let count = if septets <= GSM7_SINGLE {
        1
    } else {
        // Only multipart texts pay for the second pass that keeps ESC pairs whole.
        let mut parts = Parts::new(GSM7_PART);
        text.chars()
            .filter_map(gsm7_septets)
            .for_each(|width| parts.push(width));
        parts.count
    };
    Segments {
        encoding: Encoding::Gsm7,
        count,
        units: septets,
    }
}

/// Septets of the whole text, or `None` as soon as one character needs UCS-2.
fn gsm7_total(text: &str) -> Option<u32> {
    if text.is_ascii() {
        // Most traffic is plain ASCII: a branch-free byte loop, no UTF-8 decoding. The sum
        // cannot overflow a u64 (at most two septets per byte of a `str`).
        let (sum, rejected) = text.bytes().fold((0u64, false), |(sum, rejected), b| {
            let width = byte_septets(b);
            (sum + u64::from(width), rejected | (width == 0))
        });
        (!rejected).then(|| u32::try_from(sum).unwrap_or(u32::MAX))
    } else {
        text.chars()
            .try_fold(0u32, |sum, c| Some(sum.saturating_add(gsm7_septets(c)?)))
    }
}

fn count_ucs2(text: &str) -> Segments {
    let units = text
        .chars()
        .fold(0u32, |sum, c| sum.saturating_add(utf16_units(c)));
    if units <= UCS2_SINGLE {
        // Nothing is cut, so grapheme segmentation (the costly part) is not needed.
        return Segments {
            encoding: Encoding::Ucs2,
            count: 1,
            units,
        };
    }
    let mut parts = Parts::new(UCS2_PART);
    for cluster in text.graphemes(true) {
        let width = cluster
            .chars()
            .fold(0u32, |sum, c| sum.saturating_add(utf16_units(c)));
        if width <= UCS2_PART {
            parts.push(width);
        } else {
            // A cluster longer than a whole part (e.g. stacked combining marks) cannot stay
            // whole, so it is cut between code points, still keeping surrogate pairs intact.
            for c in cluster.chars() {
                parts.push(utf16_units(c));
            }
        }
    }
    Segments {
        encoding: Encoding::Ucs2,
        count: parts.count,
        units,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn segments(encoding: Encoding, count: u32, units: u32) -> Segments {
        Segments {
            encoding,
            count,
            units,
        }
    }

    #[derive(serde::Deserialize)]
    struct Case {
        text: String,
        encoding: String,
        segments: u32,
        units: u32,
        note: String,
    }

    #[test]
    fn every_reference_case_is_counted_as_the_fixture_says() {
        let fixture = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/segments.jsonl"
        ));
        let mut failures = Vec::new();
        let mut total = 0;
        for (line, raw) in fixture.lines().enumerate() {
            let case: Case = serde_json::from_str(raw).expect("fixture line is valid JSON");
            total += 1;
            let got = count(&case.text);
            let want = (case.encoding.as_str(), case.segments, case.units);
            if (got.encoding.as_str(), got.count, got.units) != want {
                failures.push(format!(
                    "line {}: {}: want {want:?}, got {got:?}",
                    line + 1,
                    case.note
                ));
            }
        }
        assert_eq!(total, 607, "the fixture should hold every reference case");
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn single_segment_holds_160_septets_or_70_code_units() {
        assert_eq!(count(&"a".repeat(160)).count, 1);
        assert_eq!(count(&"a".repeat(161)).count, 2);
        assert_eq!(count(&"ж".repeat(70)).count, 1);
        assert_eq!(count(&"ж".repeat(71)).count, 2);
    }

    #[test]
    fn gsm_extension_pair_is_never_split_across_parts() {
        // 306 septets would fill exactly two parts if the ESC pair at septets 153-154 could
        // be cut; moved whole, it pushes one septet into a third part.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(count(&text), segments(Encoding::Gsm7, 3, 306));
    }

    #[test]
    fn emoji_zwj_sequence_is_never_split_across_parts() {
        // The 8-unit family would straddle unit 67 of exactly two full parts.
        let family = "👨\u{200d}👩\u{200d}👧";
        let text = format!("{}{family}{}", "ж".repeat(64), "ж".repeat(62));
        assert_eq!(count(&text), segments(Encoding::Ucs2, 3, 134));
    }

    #[test]
    fn cluster_longer_than_a_part_is_cut_between_code_points() {
        // Kept whole, the 201-unit cluster would give 2 parts, one of them impossible.
        let text = format!("{}e{}", "ж".repeat(10), "\u{301}".repeat(200));
        assert_eq!(count(&text), segments(Encoding::Ucs2, 4, 211));
    }

    #[test]
    fn empty_text_is_one_gsm_segment_of_zero_units() {
        assert_eq!(count(""), segments(Encoding::Gsm7, 1, 0));
    }

    #[test]
    fn multi_megabyte_texts_are_counted_without_panicking() {
        assert_eq!(count(&"a{".repeat(1_000_000)).units, 3_000_000);
        let got = count(&"é👍🏽".repeat(400_000));
        assert_eq!((got.encoding, got.units), (Encoding::Ucs2, 2_000_000));
        assert!(got.count >= 2_000_000 / 67);
    }

    #[test]
    fn encoding_serializes_as_its_api_name() {
        assert_eq!(serde_json::to_string(&Encoding::Ucs2).unwrap(), "\"UCS-2\"");
        assert_eq!(Encoding::Gsm7.as_str(), "GSM-7");
    }
}
