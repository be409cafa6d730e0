//! A deterministic fuzz run: a million generated inputs (the known reproducer and its
//! mutations, separators, `;`, `tel:`, non-ASCII digits, control characters, random Unicode,
//! long strings) through parsing with several default regions. Any panic — even one the
//! `catch_unwind` guard would have turned into an error — fails it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::tests::{REPRODUCER, region};
use super::*;

/// How many generated inputs the fuzz test pushes through the parser.
const FUZZ_INPUTS: usize = 1_000_000;

/// xorshift64*: deterministic, dependency-free and fast.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

#[rustfmt::skip]
const FRAGMENTS: &[&str] = &[
    "+", "00", "011", "0", "1", "44", "49", "86", "7", " ", "-", ".", "(", ")", "/", ";",
    "tel:", "TEL:", "Tel:", "phone-context=", ";phone-context=", ";phone-context=+1",
    "PHONE-CONTEXT=", ";ext=", " ext ", "x", "#", "*", ";isub=", "+1;", "abc", "FLOWERS",
    "٠١٢٣٤٥٦٧٨٩", "۰۱۲", "０１２３", "＋", "\0", "\t", "\n", "\u{7f}", "\u{200b}", "\u{feff}", "é",
    "中", "🙂", "%", "\\", "\"", "'", "=", ",", "~", "２０２５５５０１４３", "2015550123",
];

#[rustfmt::skip]
const COUNTRY_CODES: &[&str] = &[
    "1", "7", "20", "27", "33", "39", "44", "49", "52", "55", "61", "81", "86", "91", "234",
    "254", "290", "380", "683", "800", "870", "971", "979", "999",
];

fn random_char(rng: &mut Rng) -> char {
    let ranges: [(u32, u32); 6] = [
        (0x20, 0x7f),
        (0x00, 0x20),
        (0x660, 0x66a),
        (0xff10, 0xff1a),
        (0x80, 0x3000),
        (0x0, 0x11_0000),
    ];
    let (lo, hi) = rng.pick(&ranges);
    let code = lo + (rng.next() % u64::from(hi - lo)) as u32;
    char::from_u32(code).unwrap_or('\u{fffd}')
}

fn digits(rng: &mut Rng, out: &mut String, count: usize) {
    for _ in 0..count {
        out.push(char::from(b'0' + rng.below(10) as u8));
    }
}

/// Every example number the metadata has, in E.164, international and national format.
fn example_numbers() -> Vec<String> {
    use rlibphonenumber::PhoneNumberType as T;
    let types = [
        T::FixedLine,
        T::Mobile,
        T::TollFree,
        T::PremiumRate,
        T::SharedCost,
        T::VoIP,
        T::PersonalNumber,
        T::Pager,
        T::UAN,
        T::VoiceMail,
    ];
    let mut numbers: Vec<PhoneNumber> = PHONE_NUMBER_UTIL
        .get_supported_regions()
        .flat_map(|r| {
            types.into_iter().filter_map(move |t| {
                PHONE_NUMBER_UTIL
                    .get_example_number_for_type_and_region(r, t)
                    .ok()
            })
        })
        .collect();
    numbers.extend(
        PHONE_NUMBER_UTIL
            .get_supported_global_network_calling_codes()
            .filter_map(|cc| {
                PHONE_NUMBER_UTIL
                    .get_example_number_for_non_geo_entity(cc)
                    .ok()
            }),
    );
    let mut formatted: Vec<String> = numbers
        .iter()
        .flat_map(|n| {
            [
                PhoneNumberFormat::E164,
                PhoneNumberFormat::International,
                PhoneNumberFormat::National,
            ]
            .map(|f| n.format_as(f).into_owned())
        })
        .collect();
    formatted.sort();
    formatted
}

fn generate(rng: &mut Rng, examples: &[String], out: &mut String) {
    out.clear();
    match rng.below(14) {
        // Example numbers with their last digits changed and their punctuation varied:
        // mostly valid, so that re-parsing gets a workout.
        0..=3 => {
            let example = examples[rng.below(examples.len())].as_str();
            let keep = example.len() / 2;
            let start = match example.strip_prefix('+') {
                Some(rest) if rng.below(3) == 0 => {
                    out.push_str(rng.pick(&["00", "011 ", "+ ", "++", ""]));
                    rest
                }
                _ => example,
            };
            for (at, c) in start.char_indices() {
                if at >= keep && c.is_ascii_digit() && rng.below(2) == 0 {
                    out.push(char::from(b'0' + rng.below(10) as u8));
                } else if c == ' ' && rng.below(4) == 0 {
                    out.push_str(rng.pick(&["-", ".", "", "  ", "/", ") "]));
                } else {
                    out.push(c);
                }
            }
        }
        // Plausible numbers from scratch.
        4..=7 => {
            out.push_str(rng.pick(&["+", "00", "+ ", "011 ", "", "0", "++"]));
            if rng.below(4) != 0 {
                out.push_str(rng.pick(COUNTRY_CODES));
            }
            let groups = 1 + rng.below(4);
            for _ in 0..groups {
                out.push_str(rng.pick(&[" ", "-", ".", "", "(", ") ", "/"]));
                let len = 1 + rng.below(5);
                digits(rng, out, len);
            }
        }
        // Fragment soup: separators, prefixes, URI pieces, letters, other scripts.
        8..=9 => {
            for _ in 0..1 + rng.below(12) {
                if rng.below(3) == 0 {
                    let len = 1 + rng.below(8);
                    digits(rng, out, len);
                } else {
                    out.push_str(rng.pick(FRAGMENTS));
                }
            }
        }
        // The reproducer, as is and mutated.
        10..=11 => {
            let mut chars: Vec<char> = REPRODUCER.chars().collect();
            for _ in 0..rng.below(5) {
                let at = rng.below(chars.len() + 1);
                match rng.below(4) {
                    0 => chars
                        .splice(at..at, rng.pick(FRAGMENTS).chars())
                        .for_each(drop),
                    1 if at < chars.len() => {
                        chars.remove(at);
                    }
                    2 if at < chars.len() => chars[at] = random_char(rng),
                    _ => chars.insert(at, random_char(rng)),
                }
            }
            out.extend(chars);
        }
        // Random unicode, including control characters.
        12 => {
            for _ in 0..rng.below(40) {
                out.push(random_char(rng));
            }
        }
        // Long strings around and far beyond the length limit.
        _ => {
            let len = rng.pick(&[60, 63, 64, 65, 66, 100, 500]);
            out.push_str(rng.pick(&["+", "00", "", "+44 "]));
            while out.chars().count() < len {
                if rng.below(4) == 0 {
                    out.push(random_char(rng));
                } else {
                    out.push(char::from(b'0' + rng.below(10) as u8));
                }
            }
        }
    }
}

#[derive(Default)]
struct FuzzStats {
    inputs: usize,
    valid: usize,
    refused_before_parsing: usize,
    caught_panics: Vec<String>,
    shortest: usize,
    longest: usize,
}

fn fuzz(seed: u64, inputs: usize, examples: &[String]) -> FuzzStats {
    let regions: Vec<Region> = ["US", "GB", "DE", "IN", "BR", "CN", "IT", "JP", "AU", "NG"]
        .into_iter()
        .map(region)
        .collect();
    let mut rng = Rng(seed);
    let mut stats = FuzzStats {
        shortest: usize::MAX,
        ..FuzzStats::default()
    };
    let mut input = String::new();
    for i in 0..inputs {
        if i % 1000 == 0 {
            input.clear();
            input.push_str(REPRODUCER);
        } else {
            generate(&mut rng, examples, &mut input);
        }
        let default_region = regions[i % regions.len()];
        let inspected = inspect(&input, default_region);
        let parsed = E164::parse(&input, default_region);
        assert_eq!(
            parsed,
            inspected
                .as_ref()
                .map(|info| info.e164.clone())
                .map_err(Clone::clone),
            "E164::parse and inspect disagree on {input:?} in {default_region}"
        );
        stats.inputs += 1;
        match &parsed {
            Err(PhoneError::Empty | PhoneError::TooLong | PhoneError::Unsupported) => {
                stats.refused_before_parsing += 1;
            }
            Err(PhoneError::Unparseable { reason }) if reason == PARSER_PANICKED => {
                stats.caught_panics.push(input.clone());
            }
            _ => {}
        }
        let Ok(e164) = parsed else { continue };
        stats.valid += 1;
        let digits = e164.as_str().strip_prefix('+').unwrap_or("");
        assert!(
            (6..=15).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit())
                && !digits.starts_with('0'),
            "{input:?} in {default_region} gave {e164}, not E.164"
        );
        stats.shortest = stats.shortest.min(digits.len());
        stats.longest = stats.longest.max(digits.len());
        let other_region = regions[(i + 1 + rng.below(regions.len() - 1)) % regions.len()];
        for again_in in [default_region, other_region] {
            assert_eq!(
                E164::parse(e164.as_str(), again_in).as_ref(),
                Ok(&e164),
                "{input:?} gave {e164}, which does not re-parse to itself in {again_in}"
            );
        }
    }
    stats
}

#[test]
fn a_million_fuzzed_inputs_never_panic_and_valid_results_are_canonical_e164() {
    let started = std::time::Instant::now();
    let examples = example_numbers();
    // Fixed shards keep the inputs the same on every machine; threads share them out.
    const SHARDS: usize = 8;
    let per_shard = FUZZ_INPUTS.div_ceil(SHARDS);
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let workers = workers.clamp(1, SHARDS);
    let results: Vec<FuzzStats> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let examples = &examples;
                scope.spawn(move || {
                    (w..SHARDS)
                        .step_by(workers)
                        .map(|shard| {
                            let seed = 0x9E37_79B9_7F4A_7C15 ^ (shard as u64 + 1);
                            fuzz(seed, per_shard, examples)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a panic escaped the phone parser"))
            .collect()
    });
    let inputs: usize = results.iter().map(|s| s.inputs).sum();
    let valid: usize = results.iter().map(|s| s.valid).sum();
    let refused: usize = results.iter().map(|s| s.refused_before_parsing).sum();
    let caught: Vec<&String> = results.iter().flat_map(|s| &s.caught_panics).collect();
    let shortest = results.iter().map(|s| s.shortest).min().unwrap_or(0);
    let longest = results.iter().map(|s| s.longest).max().unwrap_or(0);
    eprintln!(
        "fuzz: {inputs} inputs on {workers} threads in {:?}: {valid} valid \
         (E.164 digits {shortest}..={longest}), {refused} refused before parsing, \
         {} parser panics caught",
        started.elapsed(),
        caught.len()
    );
    assert!(inputs >= FUZZ_INPUTS);
    assert!(
        valid > inputs / 20,
        "too few valid inputs to test re-parsing: {valid}"
    );
    assert!(
        refused > inputs / 20,
        "too few inputs exercise the guards: {refused}"
    );
    assert!(
        caught.is_empty(),
        "the guards let inputs reach a parser panic (caught, but add a guard): {:?}",
        &caught[..caught.len().min(10)]
    );
}
