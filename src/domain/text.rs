//! A message text that passed the SPEC's checks: not empty, no control characters other than
//! `\n`, `\r` and `\t` (Unicode category Cc: C0, DEL and C1), and within the channel's length.

use super::Channel;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageText(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("the message is empty")]
    Empty,
    #[error(
        "the message contains a control character (U+{0:04X}); only newline, carriage return and tab are allowed"
    )]
    ControlCharacter(u32),
    #[error("the message is {len} characters long; {channel} messages may have at most {max}")]
    TooLong {
        len: usize,
        max: usize,
        channel: Channel,
    },
}

impl MessageText {
    pub fn parse(s: String, channel: Channel) -> Result<Self, TextError> {
        if s.is_empty() {
            return Err(TextError::Empty);
        }
        let mut len = 0usize;
        for c in s.chars() {
            if c.is_control() && !matches!(c, '\n' | '\r' | '\t') {
                return Err(TextError::ControlCharacter(c.into()));
            }
            len += 1;
        }
        let max = channel.max_chars();
        if len > max {
            return Err(TextError::TooLong { len, max, channel });
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_except_line_breaks_and_tabs() {
        assert!(MessageText::parse("a\nb\r\tc".into(), Channel::Sms).is_ok());
        for bad in ["\u{0}", "\u{7}", "\u{c}", "\u{7f}", "\u{85}", "\u{9f}"] {
            assert!(
                matches!(
                    MessageText::parse(format!("x{bad}"), Channel::Sms),
                    Err(TextError::ControlCharacter(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn length_is_counted_in_code_points_per_channel() {
        let emoji = "😀".repeat(1_600);
        assert!(MessageText::parse(emoji.clone(), Channel::Sms).is_ok());
        assert!(MessageText::parse(format!("{emoji}x"), Channel::Sms).is_err());
        assert!(MessageText::parse("x".repeat(4_096), Channel::Whatsapp).is_ok());
        assert!(MessageText::parse("x".repeat(4_097), Channel::Whatsapp).is_err());
        assert_eq!(
            MessageText::parse(String::new(), Channel::Sms),
            Err(TextError::Empty)
        );
    }
}
