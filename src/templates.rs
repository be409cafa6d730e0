//! Message templates (SPEC §3): Handlebars with HTML escaping off, because an SMS is not
//! HTML, and strict variables: a variable missing for a recipient is an error naming it,
//! never rendered as blank. A JSON `null` or an empty string counts as missing, so an
//! empty CSV cell cannot send a message with a hole in it.
//!
//! A [`Template`] is compiled once and rendered per recipient; a [`TemplateLibrary`] holds
//! the named templates shipped as `templates/NAME.hbs`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use handlebars::{Context, Handlebars, RenderErrorReason, TemplateErrorReason};
use serde_json::{Map, Value};

/// The longest template source accepted, in characters; a single SMS is at most 1,600
/// characters even when concatenated, so this only stops abuse.
pub const MAX_TEMPLATE_CHARS: usize = 10_000;

/// The longest template name accepted, in characters.
const MAX_NAME_CHARS: usize = 64;

/// The variable every render gets, holding the recipient's number.
const PHONE_NUMBER: &str = "phone_number";

/// The name the template goes by inside its own registry; never shown to anyone.
const REGISTERED_NAME: &str = "t";

/// One compiled template, cheap to clone and to render many times from many threads.
#[derive(Clone)]
pub struct Template {
    inner: Arc<Compiled>,
}

struct Compiled {
    source: String,
    // A registry per template rather than one shared registry: a template is then a
    // self-contained value (no name to keep unique, no lock to take to add one) and the
    // parse happens once, at compile.
    registry: Handlebars<'static>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("source", &self.inner.source)
            .finish_non_exhaustive()
    }
}

impl Template {
    /// Compiles `source`, refusing an empty or whitespace-only template, one longer than
    /// 10,000 characters and one that is not valid Handlebars.
    pub fn compile(source: &str) -> Result<Template, TemplateError> {
        let chars = source.chars().count();
        if chars > MAX_TEMPLATE_CHARS {
            return Err(TemplateError::TooLong { chars });
        }
        if source.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut registry = Handlebars::new();
        registry.register_escape_fn(handlebars::no_escape);
        registry.set_strict_mode(true);
        // A bare `{{name}}` that matches a helper calls the helper instead of reading the
        // variable, and these two then render nothing: `{{raw}}` or `{{log}}` would send a
        // blank. Neither is of use in an SMS (`\{{` writes a literal `{{`), and without
        // them such names are plain strict variables.
        registry.unregister_helper("raw");
        registry.unregister_helper("log");
        registry
            .register_template_string(REGISTERED_NAME, source)
            .map_err(|error| syntax_error(source, &error))?;
        Ok(Template {
            inner: Arc::new(Compiled {
                source: source.to_owned(),
                registry,
            }),
        })
    }

    /// The source the template was compiled from.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Renders with `vars` layered: `recipient` overrides `defaults`, plus the built-in
    /// `phone_number` (which overrides both).
    ///
    /// A value that is `null` or `""` counts as absent: a recipient's empty value falls back
    /// to the default, and with no default a `{{variable}}` using it is
    /// [`RenderError::MissingVariable`]. A variable only tested by `{{#if}}` or
    /// `{{#unless}}` may be absent. A rendering that is empty or only whitespace is
    /// [`RenderError::Failed`], since an empty SMS is never meant.
    pub fn render(
        &self,
        defaults: &Map<String, Value>,
        recipient: &Map<String, Value>,
        phone_number: &str,
    ) -> Result<String, RenderError> {
        let mut vars = Map::new();
        vars.insert(
            PHONE_NUMBER.to_owned(),
            Value::String(phone_number.to_owned()),
        );
        // Recipient first, then defaults only where still absent: an overridden default
        // is then never cloned, which matters at a million renders per campaign.
        for layer in [recipient, defaults] {
            for (key, value) in layer {
                if !vars.contains_key(key)
                    && let Some(value) = present(value)
                {
                    vars.insert(key.clone(), value);
                }
            }
        }
        let context = Context::from(Value::Object(vars));
        let text = self
            .inner
            .registry
            .render_with_context(REGISTERED_NAME, &context)
            .map_err(|error| render_error(&error))?;
        if text.trim().is_empty() {
            return Err(RenderError::Failed {
                reason: "the message is empty for this recipient; check the template's \
                         {{#if}} blocks"
                    .to_owned(),
            });
        }
        Ok(text)
    }
}

/// A copy of `value` fit for rendering, or `None` when it counts as absent. Strict mode
/// only refuses keys that do not exist, and renders `null` and `""` as blanks, so those
/// are dropped here, inside nested objects too (for `{{customer.name}}`).
fn present(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, v)| present(v).map(|v| (k.clone(), v)))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

fn syntax_error(source: &str, error: &handlebars::TemplateError) -> TemplateError {
    let (line, column) = match error.pos() {
        Some((line, column)) => (Some(line), Some(column)),
        None => (None, None),
    };
    let reason = match error.reason() {
        // The parser's own words name grammar rules ("expected identifier,
        // subexpression, leading_tilde_to_omit_whitespace…"), which nobody can act on.
        TemplateErrorReason::InvalidSyntax(_) => match text_at(source, line, column) {
            Some(text) if !text.is_empty() => format!(
                "unexpected `{text}`; write variables as `{{{{name}}}}` and blocks as \
                 `{{{{#if name}}}}…{{{{/if}}}}`, and write a literal `{{{{` as `\\{{{{`"
            ),
            _ => "the template ends inside a tag or a block; check that every `{{` has its \
                  `}}` and every `{{#if …}}` its `{{/if}}`"
                .to_owned(),
        },
        TemplateErrorReason::MismatchingClosedHelper(open, close)
        | TemplateErrorReason::MismatchingClosedDecorator(open, close) => format!(
            "the block `{{{{#{open}}}}}` is closed by `{{{{/{close}}}}}`; close it with \
             `{{{{/{open}}}}}`"
        ),
        other => other.to_string(),
    };
    TemplateError::Syntax {
        line,
        column,
        reason,
    }
}

/// Up to a dozen characters of `source` from the 1-based `line` and `column`, to quote
/// in an error; `Some("")` at the end of a line or of the template.
fn text_at(source: &str, line: Option<usize>, column: Option<usize>) -> Option<String> {
    let text = source.lines().nth(line?.checked_sub(1)?)?;
    Some(
        text.chars()
            .skip(column?.checked_sub(1)?)
            .take(12)
            .collect(),
    )
}

fn render_error(error: &handlebars::RenderError) -> RenderError {
    let reason = match error.reason() {
        RenderErrorReason::MissingVariable(Some(path)) => {
            return RenderError::MissingVariable {
                name: variable_name(path).to_owned(),
            };
        }
        RenderErrorReason::MissingVariable(None) => {
            "a value the template looks up has no value for this recipient".to_owned()
        }
        RenderErrorReason::HelperNotFound(name) => {
            format!("the template calls `{name}`, which is not a known helper")
        }
        RenderErrorReason::PartialNotFound(name) => {
            format!("the template includes the partial `{name}`, but partials are not supported")
        }
        RenderErrorReason::ParamNotFoundForIndex(helper, _)
        | RenderErrorReason::ParamNotFoundForName(helper, _) => format!(
            "the helper `{helper}` is missing an argument, or an argument has no value for \
             this recipient (a variable that shares a helper's name is written \
             `{{{{this.{helper}}}}}`)"
        ),
        other => other.to_string(),
    };
    let reason = match (error.line_no, error.column_no) {
        (Some(line), Some(column)) => format!("line {line}, column {column}: {reason}"),
        _ => reason,
    };
    RenderError::Failed { reason }
}

/// The variable's name as the template's author knows it: `{{this.name}}` and
/// `{{@root.name}}` both read `name`.
fn variable_name(path: &str) -> &str {
    path.strip_prefix("this.")
        .or_else(|| path.strip_prefix("@root."))
        .or_else(|| path.strip_prefix("./"))
        .unwrap_or(path)
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Not valid Handlebars; `line` and `column` are 1-based, when the parser gives them.
    #[error("the template does not compile: {}{reason}", position(*.line, *.column))]
    Syntax {
        line: Option<usize>,
        column: Option<usize>,
        reason: String,
    },
    /// Empty or whitespace only.
    #[error(
        "the template is empty; write the message text, with variables such as {{{{name}}}} \
         where each recipient's values go"
    )]
    Empty,
    /// Longer than 10,000 characters.
    #[error("the template is {chars} characters long; the limit is {MAX_TEMPLATE_CHARS}")]
    TooLong { chars: usize },
}

fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!("line {line}, column {column}: "),
        (Some(line), None) => format!("line {line}: "),
        _ => String::new(),
    }
}

/// Why a template could not be rendered for one recipient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A `{{variable}}` has no value (absent, `null` or `""`); `name` is as written in the
    /// template, dotted for nested values (`customer.name`).
    #[error("the variable `{name}` has no value for this recipient")]
    MissingVariable { name: String },
    /// Any other failure, such as an unknown helper.
    #[error("the message could not be rendered: {reason}")]
    Failed { reason: String },
}

impl RenderError {
    /// The missing variable's name, for [`RenderError::MissingVariable`].
    pub fn variable(&self) -> Option<&str> {
        match self {
            RenderError::MissingVariable { name } => Some(name),
            RenderError::Failed { .. } => None,
        }
    }
}

/// A template's name: 1 to 64 characters, each an ASCII letter, digit, `_` or `-`, so it
/// is safe as a file name and in a URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TemplateName(String);

impl TemplateName {
    /// Checks `s` is a valid name.
    pub fn parse(s: &str) -> Result<TemplateName, TemplateNameError> {
        if s.is_empty() {
            return Err(TemplateNameError::Empty);
        }
        let chars = s.chars().count();
        if chars > MAX_NAME_CHARS {
            return Err(TemplateNameError::TooLong { chars });
        }
        if let Some(character) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(TemplateNameError::InvalidCharacter { character });
        }
        Ok(TemplateName(s.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a string is not a valid [`TemplateName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateNameError {
    /// The name is the empty string.
    #[error("the template name is empty; use 1 to 64 letters, digits, `_` or `-`")]
    Empty,
    /// Longer than 64 characters.
    #[error(
        "the template name is {chars} characters long; use 1 to 64 letters, digits, `_` or `-`"
    )]
    TooLong { chars: usize },
    /// A character other than an ASCII letter, digit, `_` or `-`.
    #[error(
        "the template name contains {character:?}; use only ASCII letters, digits, `_` and `-`"
    )]
    InvalidCharacter { character: char },
}

/// The named templates shipped in `templates/`, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct TemplateLibrary {
    templates: BTreeMap<TemplateName, Template>,
}

impl TemplateLibrary {
    /// Loads every `NAME.hbs` in `dir` (non-recursive; other files such as README.md
    /// ignored); a missing dir is an empty library; a file that does not compile or has an
    /// invalid name is an error naming the file.
    ///
    /// Trailing line breaks are dropped from each file: editors add one, and it would
    /// otherwise be sent as part of every message.
    pub fn load_dir(dir: &Path) -> Result<TemplateLibrary, LibraryError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(TemplateLibrary::empty());
            }
            Err(source) => {
                return Err(LibraryError::ReadDir {
                    dir: dir.to_owned(),
                    source,
                });
            }
        };
        let mut templates = BTreeMap::new();
        for entry in entries {
            let entry = entry.map_err(|source| LibraryError::ReadDir {
                dir: dir.to_owned(),
                source,
            })?;
            let file = entry.path();
            // `is_file` follows symlinks, so a linked template loads and a folder named
            // `x.hbs` is skipped.
            if file.extension().is_none_or(|ext| ext != "hbs") || !file.is_file() {
                continue;
            }
            let name = file
                .file_stem()
                .and_then(|stem| stem.to_str())
                .ok_or_else(|| LibraryError::InvalidName {
                    file: file.clone(),
                    reason: "the file name is not valid UTF-8".to_owned(),
                })
                .and_then(|stem| {
                    TemplateName::parse(stem).map_err(|error| LibraryError::InvalidName {
                        file: file.clone(),
                        reason: error.to_string(),
                    })
                })?;
            let source =
                std::fs::read_to_string(&file).map_err(|source| LibraryError::ReadFile {
                    file: file.clone(),
                    source,
                })?;
            let template = Template::compile(source.trim_end_matches(['\n', '\r']))
                .map_err(|source| LibraryError::Compile { file, source })?;
            templates.insert(name, template);
        }
        Ok(TemplateLibrary { templates })
    }

    /// A library with no templates.
    pub fn empty() -> TemplateLibrary {
        TemplateLibrary::default()
    }

    /// The template called `name`, if there is one.
    pub fn get(&self, name: &TemplateName) -> Option<&Template> {
        self.templates.get(name)
    }

    /// Every template with its name, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&TemplateName, &Template)> {
        self.templates.iter()
    }
}

/// Why the template folder could not be loaded; each names the folder or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// The folder exists but cannot be listed.
    #[error("cannot read the template folder {}: {source}", dir.display())]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// A `.hbs` file cannot be read, or is not UTF-8.
    #[error("cannot read the template file {}: {source}", file.display())]
    ReadFile {
        file: PathBuf,
        source: std::io::Error,
    },
    /// The file's stem is not a valid [`TemplateName`].
    #[error(
        "the template file {} has an invalid name: {reason}; name it NAME.hbs",
        file.display()
    )]
    InvalidName { file: PathBuf, reason: String },
    /// The file's content is not a valid template.
    #[error("the template file {}: {source}", file.display())]
    Compile {
        file: PathBuf,
        source: TemplateError,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn render(source: &str, recipient: Value) -> Result<String, RenderError> {
        Template::compile(source)
            .unwrap()
            .render(&Map::new(), &map(recipient), "+447700900123")
    }

    #[test]
    fn template_is_clone_send_sync() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<Template>();
        check::<TemplateLibrary>();
    }

    #[test]
    fn recipient_overrides_defaults_and_phone_number_overrides_both() {
        let template =
            Template::compile("{{greeting}} {{name}}, {{phone_number}} {{shop}}").unwrap();
        let defaults = map(json!({"greeting": "Hi", "name": "customer", "shop": "Acme",
                                 "phone_number": "from defaults"}));
        let recipient = map(json!({"name": "Ana", "phone_number": "from recipient"}));
        let text = template
            .render(&defaults, &recipient, "+447700900123")
            .unwrap();
        assert_eq!(text, "Hi Ana, +447700900123 Acme");
        assert_eq!(
            template.source(),
            "{{greeting}} {{name}}, {{phone_number}} {{shop}}"
        );
        // Rendering again gives the same text: nothing is consumed by a render.
        assert_eq!(
            template
                .render(&defaults, &recipient, "+447700900123")
                .unwrap(),
            text
        );
    }

    #[test]
    fn missing_variable_is_named() {
        let error = render("Hi {{name}}, code {{code}}", json!({"code": "1"})).unwrap_err();
        assert_eq!(
            error,
            RenderError::MissingVariable {
                name: "name".to_owned()
            }
        );
        assert_eq!(error.variable(), Some("name"));
        assert_eq!(
            error.to_string(),
            "the variable `name` has no value for this recipient"
        );

        let error = render("Hi {{customer.name}}", json!({})).unwrap_err();
        assert_eq!(error.variable(), Some("customer.name"));
        let error = render("Hi {{customer.name}}", json!({"customer": {"id": 1}})).unwrap_err();
        assert_eq!(error.variable(), Some("customer.name"));
        let error = render("Hi {{this.name}} {{{given}}}", json!({"name": "A"})).unwrap_err();
        assert_eq!(error.variable(), Some("given"));
        let error = render("Hi {{this.name}}", json!({})).unwrap_err();
        assert_eq!(error.variable(), Some("name"));
    }

    #[test]
    fn variables_named_like_helpers() {
        // `raw` and `log` are unregistered so that they cannot render as blanks.
        for name in ["raw", "log"] {
            let source = format!("Hi {{{{{name}}}}}");
            assert_eq!(
                render(&source, json!({})).unwrap_err().variable(),
                Some(name)
            );
            assert_eq!(render(&source, json!({name: "x"})).unwrap(), "Hi x");
        }
        let error = render("Hi {{len}}", json!({"len": "x"})).unwrap_err();
        assert!(error.to_string().contains("`{{this.len}}`"), "{error}");
        assert_eq!(
            render("Hi {{this.len}}", json!({"len": "x"})).unwrap(),
            "Hi x"
        );
    }

    #[test]
    fn condition_on_missing_variable_is_not_an_error() {
        let source = "Hi{{#if name}} {{name}}{{/if}}.{{#unless url}} No link.{{/unless}}\
                      {{#if customer.vip}} VIP{{else}} Welcome{{/if}}";
        assert_eq!(render(source, json!({})).unwrap(), "Hi. No link. Welcome");
        assert_eq!(
            render(
                source,
                json!({"name": "Ana", "url": "x", "customer": {"vip": true}})
            )
            .unwrap(),
            "Hi Ana. VIP"
        );
    }

    #[test]
    fn null_and_empty_string_count_as_missing() {
        for value in [json!(null), json!("")] {
            let error = render("Hi {{name}}", json!({"name": value})).unwrap_err();
            assert_eq!(error.variable(), Some("name"), "{value}");
            let error = render("Hi {{c.name}}", json!({"c": {"name": value}})).unwrap_err();
            assert_eq!(error.variable(), Some("c.name"), "{value}");
            assert_eq!(
                render("Hi{{#if name}} {{name}}{{/if}}", json!({"name": value})).unwrap(),
                "Hi"
            );
            // An empty cell falls back to the campaign's default rather than blanking it.
            let text = Template::compile("Hi {{name}}")
                .unwrap()
                .render(
                    &map(json!({"name": "there"})),
                    &map(json!({"name": value})),
                    "+1",
                )
                .unwrap();
            assert_eq!(text, "Hi there");
        }
        // A space is a value, not an empty cell.
        assert_eq!(render("Hi{{name}}", json!({"name": " "})).unwrap(), "Hi ");
    }

    #[test]
    fn values_render_as_written_without_escaping() {
        let text = render(
            "{{a}} {{b}} {{c}} {{d}} {{{d}}} {{e}}",
            json!({"a": 1, "b": 1.0, "c": true, "d": "<b>&\"'", "e": false}),
        )
        .unwrap();
        assert_eq!(text, "1 1.0 true <b>&\"' <b>&\"' false");
        assert_eq!(render("a \\{{b}}", json!({})).unwrap(), "a {{b}}");
    }

    #[test]
    fn other_render_failures_are_sentences() {
        let error = render("{{shout name}}", json!({"name": "a"})).unwrap_err();
        assert_eq!(error.variable(), None);
        assert_eq!(
            error.to_string(),
            "the message could not be rendered: line 1, column 1: the template calls \
             `shout`, which is not a known helper"
        );
        let error = render("{{#if x}}{{x}}{{/if}}", json!({})).unwrap_err();
        assert!(error.to_string().contains("empty"), "{error}");
        // Built-in helpers work; `with` and `each` stay strict about their argument.
        assert_eq!(
            render("{{#if (eq s \"sent\")}}yes{{/if}}", json!({"s": "sent"})).unwrap(),
            "yes"
        );
        assert_eq!(
            render("{{#with c}}{{n}}{{/with}}", json!({}))
                .unwrap_err()
                .variable(),
            Some("c")
        );
    }

    #[test]
    fn compile_errors() {
        let error = Template::compile("Hi {{name").unwrap_err();
        assert!(
            matches!(
                error,
                TemplateError::Syntax {
                    line: Some(1),
                    column: Some(10),
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .starts_with("the template does not compile: line 1, column 10: the template ends"),
            "{error}"
        );

        let error = Template::compile("Hi\n{{.}} there").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the template does not compile: line 2, column 3: unexpected `.}} there`; write \
             variables as `{{name}}` and blocks as `{{#if name}}…{{/if}}`, and write a \
             literal `{{` as `\\{{`"
        );

        let error = Template::compile("{{#if a}}x{{/each}}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "the template does not compile: line 1, column 11: the block `{{#if}}` is closed \
             by `{{/each}}`; close it with `{{/if}}`"
        );

        assert!(Template::compile("{{#if a}}x").is_err());
        assert_eq!(Template::compile("").unwrap_err(), TemplateError::Empty);
        assert_eq!(
            Template::compile(" \n\t").unwrap_err(),
            TemplateError::Empty
        );

        let long = "é".repeat(MAX_TEMPLATE_CHARS + 1);
        assert_eq!(
            Template::compile(&long).unwrap_err().to_string(),
            "the template is 10001 characters long; the limit is 10000"
        );
        assert!(Template::compile(&"é".repeat(MAX_TEMPLATE_CHARS)).is_ok());
    }

    #[test]
    fn template_names() {
        for good in ["otp", "order_update", "A-1", &"x".repeat(64)] {
            assert_eq!(TemplateName::parse(good).unwrap().as_str(), good);
        }
        assert_eq!(TemplateName::parse("otp").unwrap().to_string(), "otp");
        assert_eq!(TemplateName::parse(""), Err(TemplateNameError::Empty));
        assert_eq!(
            TemplateName::parse(&"x".repeat(65)),
            Err(TemplateNameError::TooLong { chars: 65 })
        );
        for (bad, character) in [
            ("a b", ' '),
            ("a.hbs", '.'),
            ("../x", '.'),
            ("é", 'é'),
            ("a/b", '/'),
        ] {
            assert_eq!(
                TemplateName::parse(bad),
                Err(TemplateNameError::InvalidCharacter { character })
            );
        }
    }

    #[test]
    fn library_loads_hbs_files_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.hbs"), "B {{x}}\n").unwrap();
        std::fs::write(dir.path().join("a.hbs"), "A {{x}}\r\n\n").unwrap();
        std::fs::write(dir.path().join("README.md"), "{{ not a template").unwrap();
        std::fs::create_dir(dir.path().join("sub.hbs")).unwrap();
        std::fs::write(dir.path().join("sub.hbs").join("c.hbs"), "C").unwrap();

        let library = TemplateLibrary::load_dir(dir.path()).unwrap();
        let names: Vec<&str> = library.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let a = library.get(&TemplateName::parse("a").unwrap()).unwrap();
        assert_eq!(a.source(), "A {{x}}");
        assert_eq!(
            a.render(&Map::new(), &map(json!({"x": 1})), "+1").unwrap(),
            "A 1"
        );
        assert!(library.get(&TemplateName::parse("c").unwrap()).is_none());

        let missing = TemplateLibrary::load_dir(&dir.path().join("nope")).unwrap();
        assert_eq!(missing.iter().count(), 0);
        assert_eq!(TemplateLibrary::empty().iter().count(), 0);
    }

    #[test]
    fn library_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.hbs"), "Hi {{name").unwrap();
        let error = TemplateLibrary::load_dir(dir.path()).unwrap_err();
        assert!(matches!(error, LibraryError::Compile { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("bad.hbs"), "{text}");
        assert!(text.contains("line 1, column 10"), "{text}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad name.hbs"), "Hi").unwrap();
        let error = TemplateLibrary::load_dir(dir.path()).unwrap_err();
        assert!(
            matches!(error, LibraryError::InvalidName { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("bad name.hbs"), "{error}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty.hbs"), "\n").unwrap();
        let error = TemplateLibrary::load_dir(dir.path()).unwrap_err();
        assert!(error.to_string().contains("empty.hbs"), "{error}");
    }

    /// Length of `text` in GSM-7 septets, or `None` if it has a character GSM-7 lacks.
    /// ASCII minus the backtick and most control characters is GSM-7; the characters of
    /// the extension table take two septets.
    fn gsm7_len(text: &str) -> Option<usize> {
        text.chars().try_fold(0, |len, c| match c {
            '[' | ']' | '{' | '}' | '\\' | '^' | '~' | '|' => Some(len + 2),
            '`' => None,
            '\n' | '\r' => Some(len + 1),
            c if c.is_ascii() && !c.is_ascii_control() => Some(len + 1),
            _ => None,
        })
    }

    #[test]
    fn shipped_templates_render_as_single_sms() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/templates"));
        let library = TemplateLibrary::load_dir(dir).unwrap();
        let names: Vec<&str> = library.iter().map(|(name, _)| name.as_str()).collect();
        assert!(
            ["appointment_reminder", "order_update", "otp"]
                .iter()
                .all(|name| names.contains(name)),
            "{names:?}"
        );
        // Typical values; a new template's variables need a sample here.
        let samples = map(json!({
            "name": "Alexandra",
            "order_number": "100234567",
            "status": "out for delivery",
            "tracking_url": "https://trk.example.com/AB12CD34",
            "date": "Tue 14 May",
            "time": "10:30",
            "place": "Riverside Clinic, 12 Mill Road",
            "code": "482913",
            "minutes": 10,
        }));
        for (name, template) in library.iter() {
            let text = template
                .render(&Map::new(), &samples, "+447700900123")
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            assert!(!text.trim().is_empty(), "{name}");
            assert!(!text.contains("{{"), "{name}: {text}");
            assert!(text.is_ascii() && !text.contains('`'), "{name}: {text}");
            let len = gsm7_len(&text).unwrap_or_else(|| panic!("{name} is not GSM-7: {text}"));
            assert!(len <= 160, "{name} is {len} characters: {text}");
        }
    }
}
