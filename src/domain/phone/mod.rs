//! Phone numbers: the account's default [`Region`], the validated [`E164`] form every message
//! is addressed to, and [`inspect`] for what the metadata knows about a number.
//!
//! Parsing and validation are Google's libphonenumber rules as ported by `rlibphonenumber`,
//! which agrees with the reference library on every valid number we measured. People type
//! numbers with spaces, dashes, dots, parentheses, `00` or `+` prefixes and in national form;
//! the account's region is passed as the default region so national forms resolve, and `+CC`
//! input is read correctly whatever that region is.
//!
//! The parser panics (a slice with start after end) when `tel:` follows `;phone-context=`,
//! e.g. `2015550123;phone-context=+1;tel:` — about 700 panics per million fuzzed inputs, all
//! this one bug. So before parsing, input that is empty, longer than [`MAX_INPUT_CHARS`]
//! characters, or contains `;`, `tel:` or `phone-context` (in any case) is refused: nobody
//! needs RFC 3966 URIs or extensions to send an SMS. And the parser still runs under
//! [`std::panic::catch_unwind`], so any other panic becomes a [`PhoneError`], never a crash of
//! the dispatcher (the release profile keeps `panic = "unwind"` for this).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use rlibphonenumber::{
    PHONE_NUMBER_UTIL, ParseError, PhoneNumber, PhoneNumberFormat, PhoneNumberType,
};

/// The longest input, in characters, that is handed to the parser.
pub const MAX_INPUT_CHARS: usize = 64;

/// E.164 allows at most 15 digits after the `+`.
const E164_MAX_DIGITS: usize = 15;

/// Why a phone number or region was refused. The texts reach API clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("the phone number is empty")]
    Empty,
    #[error("the phone number is longer than 64 characters")]
    TooLong,
    #[error(
        "the phone number contains ';', 'tel:', 'phone-context' or an extension; \
         extensions and tel: URIs are not accepted, send the bare number"
    )]
    Unsupported,
    #[error("the phone number could not be read: {reason}")]
    Unparseable { reason: String },
    #[error(
        "this is not a valid phone number; check the digits, and include the country code \
         (e.g. +44) if the number is not from the account's region"
    )]
    Invalid,
    #[error(
        "'{code}' is not a region the phone metadata knows; use a two-letter ISO 3166 code \
         such as US or GB"
    )]
    UnknownRegion { code: String },
}

/// An ISO 3166 region code the phone metadata knows (e.g. "US", "GB"); parse with
/// [`Region::parse`] (case-insensitive input, stored uppercase); unknown →
/// [`PhoneError::UnknownRegion`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    code: [u8; 2],
    lib: rlibphonenumber::Region,
}

impl Region {
    /// Parses a two-letter region code, in any case, that the phone metadata has rules for.
    pub fn parse(code: &str) -> Result<Region, PhoneError> {
        let unknown = || PhoneError::UnknownRegion {
            code: code.to_owned(),
        };
        let &[a, b] = code.as_bytes() else {
            return Err(unknown());
        };
        if !a.is_ascii_alphabetic() || !b.is_ascii_alphabetic() {
            return Err(unknown());
        }
        let upper = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
        let lib = std::str::from_utf8(&upper)
            .ok()
            .and_then(|s| rlibphonenumber::Region::from_code(s).ok())
            .filter(|&lib| PHONE_NUMBER_UTIL.get_country_code_for_region(lib).is_some())
            .ok_or_else(unknown)?;
        Ok(Region { code: upper, lib })
    }

    /// The uppercase two-letter code, e.g. "GB".
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored, so this never falls back.
        std::str::from_utf8(&self.code).unwrap_or("ZZ")
    }

    /// The region the metadata assigns to a number; `None` for non-geographic entities ("001").
    fn from_lib(lib: rlibphonenumber::Region) -> Option<Region> {
        match *lib.as_region_str().as_bytes() {
            [a, b] => Some(Region { code: [a, b], lib }),
            _ => None,
        }
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Region").field(&self.as_str()).finish()
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A valid phone number in E.164 form (`+` and digits). Private field; only [`E164::parse`]
/// makes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    /// Parses what a person typed, reading national forms as numbers of `default_region`;
    /// accepts valid numbers only.
    pub fn parse(input: &str, default_region: Region) -> Result<E164, PhoneError> {
        guard(input)?;
        parser(|| parse_valid(input, default_region).map(|(_, e164)| e164))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for E164 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// What kind of line a number is, as far as the metadata can tell from its digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NumberType {
    Mobile,
    FixedLine,
    FixedLineOrMobile,
    TollFree,
    PremiumRate,
    SharedCost,
    Voip,
    PersonalNumber,
    Pager,
    Uan,
    Voicemail,
    Unknown,
}

impl NumberType {
    /// The snake_case name, the same as the serialized form.
    pub fn as_str(self) -> &'static str {
        match self {
            NumberType::Mobile => "mobile",
            NumberType::FixedLine => "fixed_line",
            NumberType::FixedLineOrMobile => "fixed_line_or_mobile",
            NumberType::TollFree => "toll_free",
            NumberType::PremiumRate => "premium_rate",
            NumberType::SharedCost => "shared_cost",
            NumberType::Voip => "voip",
            NumberType::PersonalNumber => "personal_number",
            NumberType::Pager => "pager",
            NumberType::Uan => "uan",
            NumberType::Voicemail => "voicemail",
            NumberType::Unknown => "unknown",
        }
    }

    /// Whether a line of this type can plausibly receive SMS or WhatsApp messages:
    /// mobile, fixed_line_or_mobile (e.g. all of NANPA), voip and personal_number.
    pub fn can_receive_messages(self) -> bool {
        matches!(
            self,
            NumberType::Mobile
                | NumberType::FixedLineOrMobile
                | NumberType::Voip
                | NumberType::PersonalNumber
        )
    }

    fn from_lib(number_type: PhoneNumberType) -> NumberType {
        match number_type {
            PhoneNumberType::Mobile => NumberType::Mobile,
            PhoneNumberType::FixedLine => NumberType::FixedLine,
            PhoneNumberType::FixedLineOrMobile => NumberType::FixedLineOrMobile,
            PhoneNumberType::TollFree => NumberType::TollFree,
            PhoneNumberType::PremiumRate => NumberType::PremiumRate,
            PhoneNumberType::SharedCost => NumberType::SharedCost,
            PhoneNumberType::VoIP => NumberType::Voip,
            PhoneNumberType::PersonalNumber => NumberType::PersonalNumber,
            PhoneNumberType::Pager => NumberType::Pager,
            PhoneNumberType::UAN => NumberType::Uan,
            PhoneNumberType::VoiceMail => NumberType::Voicemail,
            PhoneNumberType::Unknown => NumberType::Unknown,
        }
    }
}

/// What [`inspect`] learns about a valid number.
#[derive(Debug, Clone)]
pub struct PhoneInfo {
    pub e164: E164,
    pub number_type: NumberType,
    /// The region of the number, if the metadata knows one (not for e.g. +800 numbers).
    pub region: Option<Region>,
    pub country_code: u32,
}

/// Parses like [`E164::parse`] and also reports the number's type, region and country code.
pub fn inspect(input: &str, default_region: Region) -> Result<PhoneInfo, PhoneError> {
    guard(input)?;
    parser(|| {
        let (number, e164) = parse_valid(input, default_region)?;
        Ok(PhoneInfo {
            e164,
            number_type: NumberType::from_lib(number.get_type()),
            region: number.get_region_code().and_then(Region::from_lib),
            country_code: u32::try_from(number.country_code).unwrap_or_default(),
        })
    })
}

/// Refuses what must never reach the parser; see the module docs.
fn guard(input: &str) -> Result<(), PhoneError> {
    if input.trim().is_empty() {
        return Err(PhoneError::Empty);
    }
    // Byte length bounds character count from above, so most inputs skip the count.
    if input.len() > MAX_INPUT_CHARS && input.chars().count() > MAX_INPUT_CHARS {
        return Err(PhoneError::TooLong);
    }
    let bytes = input.as_bytes();
    if bytes.contains(&b';')
        || contains_ignore_ascii_case(bytes, b"tel:")
        || contains_ignore_ascii_case(bytes, b"phone-context")
    {
        return Err(PhoneError::Unsupported);
    }
    Ok(())
}

fn contains_ignore_ascii_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

const PARSER_PANICKED: &str = "the phone number parser failed on this input";

/// Runs library code so that a panic inside it comes back as an error.
fn parser<T>(run: impl FnOnce() -> Result<T, PhoneError>) -> Result<T, PhoneError> {
    catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|_| {
        Err(PhoneError::Unparseable {
            reason: PARSER_PANICKED.to_owned(),
        })
    })
}

/// Parses (call inside [`parser`]) and keeps only valid numbers without an extension.
///
/// `00` is the international prefix in most of the world but not in the account's region
/// everywhere (the US dials 011), so when `00…` fails as a number of the default region it is
/// read once more as `+…`. Numbers valid in the default region never take this path.
fn parse_valid(input: &str, default_region: Region) -> Result<(PhoneNumber, E164), PhoneError> {
    match parse_valid_once(input, default_region) {
        Err(err @ (PhoneError::Invalid | PhoneError::Unparseable { .. })) => {
            match input.trim_start().strip_prefix("00") {
                Some(rest) => {
                    parse_valid_once(&format!("+{rest}"), default_region).map_err(|_| err)
                }
                None => Err(err),
            }
        }
        parsed => parsed,
    }
}

fn parse_valid_once(
    input: &str,
    default_region: Region,
) -> Result<(PhoneNumber, E164), PhoneError> {
    let number = PHONE_NUMBER_UTIL
        .parse(input, Some(default_region.lib))
        .map_err(|err| PhoneError::Unparseable {
            reason: reason(&err).to_owned(),
        })?;
    if number.extension.is_some() {
        return Err(PhoneError::Unsupported);
    }
    if !number.is_valid() {
        return Err(PhoneError::Invalid);
    }
    let e164 = number.format_as(PhoneNumberFormat::E164).into_owned();
    // The metadata accepts a few fixed lines longer than E.164's 15 digits (German numbers
    // with a direct-dial extension, e.g. +49 7743 8698221613); no SMS route takes those.
    if e164.len() > 1 + E164_MAX_DIGITS {
        return Err(PhoneError::Invalid);
    }
    Ok((number, E164(e164)))
}

fn reason(err: &ParseError) -> &'static str {
    match err {
        ParseError::InvalidCountryCode => "the country calling code is not recognised",
        ParseError::NotANumber(_) => "it does not look like a phone number",
        ParseError::TooShortAfterIdd => "it is too short after the international dialling prefix",
        ParseError::TooShortNsn => "it is too short",
        ParseError::TooLongNsn => "it is too long",
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    /// Panics `rlibphonenumber` 2.2.15: `tel:` after `;phone-context=`.
    pub(super) const REPRODUCER: &str = "2015550123;phone-context=+1;tel:";

    pub(super) fn region(code: &str) -> Region {
        Region::parse(code).unwrap()
    }

    #[test]
    fn formats_people_type_normalize_to_the_same_e164() {
        let cases = [
            ("(202) 555-0143", "US", "+12025550143"),
            ("202.555.0143", "US", "+12025550143"),
            ("202-555-0143", "US", "+12025550143"),
            ("1 202 555 0143", "US", "+12025550143"),
            ("+1 (202) 555-0143", "GB", "+12025550143"),
            ("011 44 20 7946 0958", "US", "+442079460958"),
            ("0044 20 7946 0958", "GB", "+442079460958"),
            ("0044 20 7946 0958", "DE", "+442079460958"),
            ("0044 20 7946 0958", "US", "+442079460958"),
            ("00 1 202 555 0143", "US", "+12025550143"),
            ("+44 (0)20 7946 0958", "US", "+442079460958"),
            ("020 7946 0958", "GB", "+442079460958"),
            ("  020 7946 0958  ", "GB", "+442079460958"),
            ("+49 151 23456789", "US", "+4915123456789"),
            ("+49 151 23456789", "DE", "+4915123456789"),
            ("0151 23456789", "DE", "+4915123456789"),
            ("+39 06 1234 5678", "US", "+390612345678"),
            ("٠٢٠ ٧٩٤٦ ٠٩٥٨", "GB", "+442079460958"),
            ("０２０ ７９４６ ０９５８", "GB", "+442079460958"),
            ("1-800-FLOWERS", "US", "+18003569377"),
            // A competing crate rewrote these two into other numbers.
            ("+4915123456789", "US", "+4915123456789"),
            ("+8613123456789", "US", "+8613123456789"),
        ];
        for (input, default_region, expected) in cases {
            let parsed = E164::parse(input, region(default_region));
            assert_eq!(
                parsed.as_ref().map(E164::as_str),
                Ok(expected),
                "{input:?} in {default_region}"
            );
        }
    }

    #[test]
    fn invalid_numbers_and_garbage_are_refused_with_the_reason() {
        let us = region("US");
        let cases = [
            ("+1234567890", PhoneError::Invalid),
            ("12", PhoneError::Invalid),
            ("555-0143", PhoneError::Invalid),
            ("0044 20 7946 095", PhoneError::Invalid),
            ("", PhoneError::Empty),
            (" \t ", PhoneError::Empty),
            ("2025550143 ext. 12", PhoneError::Unsupported),
            ("+1 202 555 0143 x12", PhoneError::Unsupported),
            ("2025550143;ext=12", PhoneError::Unsupported),
            ("TEL:+12025550143", PhoneError::Unsupported),
            ("+12025550143 Phone-Context", PhoneError::Unsupported),
        ];
        for (input, expected) in cases {
            assert_eq!(E164::parse(input, us), Err(expected), "{input:?}");
        }
        for garbage in ["hello", "+", "---", "+999 123 456"] {
            assert!(
                matches!(
                    E164::parse(garbage, us),
                    Err(PhoneError::Unparseable { .. })
                ),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn numbers_longer_than_e164_allows_are_refused_though_the_metadata_accepts_them() {
        let long = "+4977438698221613";
        let raw = PHONE_NUMBER_UTIL.parse(long, None).unwrap();
        assert!(raw.is_valid(), "the metadata no longer accepts {long}");
        assert_eq!(E164::parse(long, region("DE")), Err(PhoneError::Invalid));
        assert!(matches!(
            inspect(long, region("US")),
            Err(PhoneError::Invalid)
        ));
    }

    #[test]
    fn error_messages_are_sentences_a_client_can_act_on() {
        let err = E164::parse("+999 123 456", region("US")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the phone number could not be read: the country calling code is not recognised"
        );
        assert_eq!(PhoneError::Empty.to_string(), "the phone number is empty");
        assert!(PhoneError::TooLong.to_string().contains("64 characters"));
        assert!(
            PhoneError::Invalid
                .to_string()
                .contains("not a valid phone number")
        );
    }

    #[test]
    fn the_panicking_reproducer_is_refused_before_the_parser_sees_it() {
        for code in ["US", "GB", "DE"] {
            assert_eq!(
                E164::parse(REPRODUCER, region(code)),
                Err(PhoneError::Unsupported)
            );
            assert!(matches!(
                inspect(REPRODUCER, region(code)),
                Err(PhoneError::Unsupported)
            ));
        }
    }

    #[test]
    fn the_raw_parser_panics_on_the_reproducer_which_is_why_the_guard_exists() {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let raw =
            catch_unwind(|| PHONE_NUMBER_UTIL.parse(REPRODUCER, Some(rlibphonenumber::Region::US)));
        std::panic::set_hook(hook);
        assert!(
            raw.is_err(),
            "rlibphonenumber no longer panics on {REPRODUCER:?}: {raw:?}"
        );
    }

    #[test]
    fn input_longer_than_64_characters_is_refused() {
        let us = region("US");
        let padded = format!("{:<64}", "+1 202 555 0143");
        assert_eq!(E164::parse(&padded, us).unwrap().as_str(), "+12025550143");
        assert_eq!(
            E164::parse(&format!("{padded} "), us),
            Err(PhoneError::TooLong)
        );
        assert_eq!(E164::parse(&"1".repeat(1000), us), Err(PhoneError::TooLong));
        // Characters, not bytes: 64 fullwidth/space characters are 100+ bytes.
        let wide = format!("{:<64}", "０２０ ７９４６ ０９５８");
        assert!(wide.len() > 64);
        let gb = region("GB");
        assert_eq!(E164::parse(&wide, gb).unwrap().as_str(), "+442079460958");
        assert_eq!(
            E164::parse(&format!("{wide}０"), gb),
            Err(PhoneError::TooLong)
        );
    }

    #[test]
    fn inspect_reports_type_region_and_country_code() {
        let us = region("US");
        let cases = [
            (
                "(202) 555-0143",
                NumberType::FixedLineOrMobile,
                Some("US"),
                1,
            ),
            ("+447400123456", NumberType::Mobile, Some("GB"), 44),
            ("+442079460958", NumberType::FixedLine, Some("GB"), 44),
            ("+4915123456789", NumberType::Mobile, Some("DE"), 49),
            ("1-800-356-9377", NumberType::TollFree, Some("US"), 1),
            ("+800 1234 5678", NumberType::TollFree, None, 800),
        ];
        for (input, number_type, number_region, country_code) in cases {
            let info = inspect(input, us).unwrap();
            assert_eq!(info.e164, E164::parse(input, us).unwrap(), "{input:?}");
            assert_eq!(info.number_type, number_type, "{input:?}");
            assert_eq!(info.region.map(|r| r.to_string()).as_deref(), number_region);
            assert_eq!(info.country_code, country_code, "{input:?}");
        }
        assert!(NumberType::Mobile.can_receive_messages());
        assert!(NumberType::FixedLineOrMobile.can_receive_messages());
        assert!(!NumberType::FixedLine.can_receive_messages());
        assert!(!NumberType::TollFree.can_receive_messages());
    }

    #[test]
    fn number_type_names_match_their_serialized_form() {
        struct ViaSerde(NumberType);
        impl fmt::Display for ViaSerde {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                serde::Serialize::serialize(&self.0, f)
            }
        }
        use NumberType::*;
        let all = [
            Mobile,
            FixedLine,
            FixedLineOrMobile,
            TollFree,
            PremiumRate,
            SharedCost,
            Voip,
            PersonalNumber,
            Pager,
            Uan,
            Voicemail,
            Unknown,
        ];
        for number_type in all {
            assert_eq!(ViaSerde(number_type).to_string(), number_type.as_str());
        }
        let e164 = E164::parse("+442079460958", region("GB")).unwrap();
        struct E164ViaSerde<'a>(&'a E164);
        impl fmt::Display for E164ViaSerde<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                serde::Serialize::serialize(self.0, f)
            }
        }
        assert_eq!(E164ViaSerde(&e164).to_string(), "+442079460958");
        assert_eq!(e164.to_string(), "+442079460958");
        assert_eq!(e164.into_string(), "+442079460958");
    }

    #[test]
    fn regions_parse_case_insensitively_and_unknown_ones_are_refused() {
        assert_eq!(Region::parse("us").unwrap().as_str(), "US");
        assert_eq!(Region::parse("Gb").unwrap(), Region::parse("GB").unwrap());
        for unknown in ["XX", "ZZ", "001", "USA", "U", "", "U1", "ÜS"] {
            assert_eq!(
                Region::parse(unknown),
                Err(PhoneError::UnknownRegion {
                    code: unknown.to_owned()
                })
            );
        }
        assert_eq!(format!("{:?}", region("de")), "Region(\"DE\")");
    }
}
