//! The keywords an inbound message can be (SPEC §7): a reply that is, trimmed of white space
//! and trailing punctuation and compared without case, one of these words. A message that
//! merely contains one ("please don't stop") is an ordinary message.

/// What an inbound message asks of the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// Opt the number out of the account.
    Stop,
    /// Opt it back in.
    Start,
    /// Ask for the account's help text.
    Help,
}

const STOP: [&str; 8] = [
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];
const START: [&str; 3] = ["START", "UNSTOP", "YES"];
const HELP: [&str; 2] = ["HELP", "INFO"];

impl Keyword {
    /// The keyword `body` is, if it is one.
    pub fn of(body: &str) -> Option<Keyword> {
        let word = body
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
            .trim_start();
        // The longest keyword is 11 letters: anything longer is a message.
        if word.is_empty() || word.len() > 11 {
            return None;
        }
        let word = word.to_ascii_uppercase();
        let is = |list: &[&str]| list.contains(&word.as_str());
        if is(&STOP) {
            Some(Keyword::Stop)
        } else if is(&START) {
            Some(Keyword::Start)
        } else if is(&HELP) {
            Some(Keyword::Help)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::Stop => "stop",
            Keyword::Start => "start",
            Keyword::Help => "help",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_keyword_in_any_case_and_with_trailing_punctuation() {
        for word in STOP {
            for form in [
                word.to_owned(),
                word.to_lowercase(),
                format!("  {}!! ", capitalized(word)),
                format!("{word}."),
                format!("{word}?!"),
            ] {
                assert_eq!(Keyword::of(&form), Some(Keyword::Stop), "{form:?}");
            }
        }
        for (word, keyword) in [
            ("start", Keyword::Start),
            ("Unstop", Keyword::Start),
            ("YES!", Keyword::Start),
            ("help?", Keyword::Help),
            ("Info", Keyword::Help),
        ] {
            assert_eq!(Keyword::of(word), Some(keyword), "{word}");
        }
    }

    #[test]
    fn a_message_that_merely_contains_a_keyword_is_not_one() {
        for body in [
            "please stop",
            "don't STOP",
            "STOP it",
            "stopping",
            "",
            "   ",
            "!!",
            "S T O P",
            "¡STOP",
            "STOPSTOPSTOP",
        ] {
            assert_eq!(Keyword::of(body), None, "{body:?}");
        }
    }

    fn capitalized(word: &str) -> String {
        let lower = word.to_lowercase();
        let mut chars = lower.chars();
        chars
            .next()
            .map(|c| c.to_uppercase().chain(chars).collect())
            .unwrap_or_default()
    }
}
