//! A WhatsApp template message: a template approved in Meta's WhatsApp Manager, named with
//! its language and the values of its body variables (`{{1}}`, `{{2}}`, …, in order).
//!
//! Outside the 24-hour customer service window (opened by the customer's last message)
//! WhatsApp delivers only template messages, so this is how a business starts a
//! conversation. Meta renders the text; Herald only names the template and fills it.
//!
//! Parsed once at the API edge with Meta's own limits, stored as JSON with the message, and
//! handed to the provider unchanged.

use serde::{Deserialize, Serialize};

/// Meta's limit on a template name.
const NAME_MAX: usize = 512;
/// The longest variable: a template body holds at most 1,024 characters once filled, so a
/// longer value can never be sent (Meta's file allows 32,768 per parameter in general).
pub const VARIABLE_MAX: usize = 1024;
/// More body variables than any template has (Meta does not publish a limit; bodies are at
/// most 1,024 characters, so a hundred `{{n}}` would leave no room for text).
pub const VARIABLES_MAX: usize = 100;

/// A validated template reference. Fields are private: it exists only through
/// [`WhatsappTemplate::parse`] (or back from the store, which only holds parsed ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhatsappTemplate {
    name: String,
    language: String,
    variables: Vec<String>,
}

/// What is wrong with a template reference, and in which of its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateFieldError {
    /// `name`, `language` or `variables[i]`.
    pub field: String,
    pub reason: String,
}

impl WhatsappTemplate {
    /// # Errors
    /// A name that is not Meta's form (lowercase letters, digits, underscores), a language
    /// that is not a locale code (`en`, `en_US`, `pt_BR`), or a variable that is empty, too
    /// long, or holds a line break, a tab or another control character (Meta refuses those
    /// in parameters, error 132018).
    pub fn parse(
        name: String,
        language: String,
        variables: Vec<String>,
    ) -> Result<Self, TemplateFieldError> {
        let error = |field: &str, reason: &str| TemplateFieldError {
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        if name.is_empty()
            || name.len() > NAME_MAX
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(error(
                "name",
                "must be the template's name as approved by Meta: 1 to 512 lowercase letters, digits or underscores",
            ));
        }
        if !is_locale(&language) {
            return Err(error(
                "language",
                "must be the template's language code as Meta spells it, e.g. `en`, `en_US` or `pt_BR`",
            ));
        }
        if variables.len() > VARIABLES_MAX {
            return Err(error(
                "variables",
                &format!("at most {VARIABLES_MAX} variables"),
            ));
        }
        for (i, v) in variables.iter().enumerate() {
            if v.trim().is_empty()
                || v.chars().count() > VARIABLE_MAX
                || v.chars().any(char::is_control)
            {
                return Err(TemplateFieldError {
                    field: format!("variables[{i}]"),
                    reason: format!(
                        "must be non-blank text of at most {VARIABLE_MAX} characters without line breaks, tabs or other control characters"
                    ),
                });
            }
        }
        Ok(Self {
            name,
            language,
            variables,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn language(&self) -> &str {
        &self.language
    }

    /// The body variables, `{{1}}` first.
    pub fn variables(&self) -> &[String] {
        &self.variables
    }
}

/// `ll`, `lll`, `ll_CC` (Meta's codes: `en`, `fil`, `en_US`, `zh_HK`, `es_LA`).
fn is_locale(code: &str) -> bool {
    let (lang, country) = match code.split_once('_') {
        Some((l, c)) => (l, Some(c)),
        None => (code, None),
    };
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_lowercase())
        && country.is_none_or(|c| c.len() == 2 && c.chars().all(|c| c.is_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, lang: &str, vars: &[&str]) -> Result<WhatsappTemplate, String> {
        WhatsappTemplate::parse(
            name.into(),
            lang.into(),
            vars.iter().map(|v| (*v).to_owned()).collect(),
        )
        .map_err(|e| e.field)
    }

    #[test]
    fn a_template_in_metas_form_is_accepted() {
        let t = parse("order_update_2", "en_US", &["Ann", "#42"]);
        assert!(t.is_ok(), "{t:?}");
        assert!(parse("hello_world", "en", &[]).is_ok());
        assert!(parse("hello_world", "fil", &[]).is_ok());
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (("", "en", vec![]), "name"),
            (("Hello", "en", vec![]), "name"),
            (("hello world", "en", vec![]), "name"),
            (("hello", "", vec![]), "language"),
            (("hello", "en-US", vec![]), "language"),
            (("hello", "EN", vec![]), "language"),
            (("hello", "en_us", vec![]), "language"),
            (("hello", "en", vec!["ok", " "]), "variables[1]"),
            (("hello", "en", vec!["two\nlines"]), "variables[0]"),
            (("hello", "en", vec!["tab\there"]), "variables[0]"),
        ];
        let long = "x".repeat(VARIABLE_MAX + 1);
        assert_eq!(
            parse("hello", "en", &[&long]).err().as_deref(),
            Some("variables[0]")
        );
        assert!(parse("hello", "en", &[&long[1..]]).is_ok());
        for ((name, lang, vars), field) in cases {
            assert_eq!(
                parse(name, lang, &vars).err().as_deref(),
                Some(field),
                "{name:?} {lang:?} {vars:?}"
            );
        }
        let many: Vec<&str> = std::iter::repeat_n("x", 101).collect();
        assert_eq!(
            parse("hello", "en", &many).err().as_deref(),
            Some("variables")
        );
    }
}
