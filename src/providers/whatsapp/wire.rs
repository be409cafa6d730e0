//! The Cloud API's wire shapes, private to the adapter: the message Herald posts, Meta's
//! answer and Graph API error body, the webhook notification, and what Meta's statuses and
//! error codes mean to Herald.

use crate::domain::MessageStatus;
use crate::providers::ProviderError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One message to `POST /{version}/{phone-number-id}/messages`.
#[derive(Debug, Serialize)]
pub(super) struct Outgoing<'a> {
    pub(super) messaging_product: &'static str,
    /// Required by Meta's OpenAPI description, though the API defaults it.
    pub(super) recipient_type: &'static str,
    /// The number in E.164 without its `+` (Meta's form; it takes both).
    pub(super) to: &'a str,
    #[serde(flatten)]
    pub(super) content: Content<'a>,
    /// Herald's message id: Meta echoes it in this message's status webhooks.
    pub(super) biz_opaque_callback_data: &'a str,
}

/// What a message is, tagged by `type` as Meta wants.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(super) enum Content<'a> {
    Text { text: Text<'a> },
    Image { image: Media<'a> },
    Video { video: Media<'a> },
    Audio { audio: Media<'a> },
    Document { document: Media<'a> },
    Template { template: Template<'a> },
}

#[derive(Debug, Serialize)]
pub(super) struct Text<'a> {
    pub(super) preview_url: bool,
    pub(super) body: &'a str,
}

/// Media by link (Herald does not upload media to Meta first).
#[derive(Debug, Serialize)]
pub(super) struct Media<'a> {
    pub(super) link: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) caption: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) filename: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub(super) struct Template<'a> {
    pub(super) name: &'a str,
    pub(super) language: Language<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) components: Vec<Component<'a>>,
}

#[derive(Debug, Serialize)]
pub(super) struct Language<'a> {
    /// Meta's only policy; its OpenAPI description requires it.
    pub(super) policy: &'static str,
    pub(super) code: &'a str,
}

#[derive(Debug, Serialize)]
pub(super) struct Component<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) parameters: Vec<Parameter<'a>>,
}

#[derive(Debug, Serialize)]
pub(super) struct Parameter<'a> {
    #[serde(rename = "type")]
    pub(super) kind: &'static str,
    pub(super) text: &'a str,
}

/// Meta's answer to an accepted send (unknown fields are ignored).
#[derive(Debug, Deserialize)]
pub(super) struct Answer {
    #[serde(default)]
    pub(super) messages: Vec<AnsweredMessage>,
}

#[derive(Debug, Deserialize)]
pub(super) struct AnsweredMessage {
    pub(super) id: String,
}

/// The Graph API error body: `{"error": {"message", "type", "code", "error_data":
/// {"details"}, "fbtrace_id"}}`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorEnvelope {
    pub(super) error: Option<GraphError>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct GraphError {
    pub(super) code: Option<i64>,
    pub(super) message: Option<String>,
    pub(super) error_data: Option<ErrorData>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorData {
    pub(super) details: Option<String>,
}

/// A webhook notification. Unknown fields are ignored; absent lists are empty.
#[derive(Debug, Deserialize)]
pub(super) struct Notification {
    #[serde(default)]
    pub(super) entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Entry {
    #[serde(default)]
    pub(super) changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Change {
    pub(super) field: Option<String>,
    pub(super) value: Option<ChangeValue>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ChangeValue {
    pub(super) metadata: Option<Metadata>,
    #[serde(default)]
    pub(super) statuses: Vec<Status>,
    #[serde(default)]
    pub(super) messages: Vec<InboundWire>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Metadata {
    pub(super) display_phone_number: Option<String>,
    /// Which of our numbers the notification concerns (finds the account that brought it).
    pub(super) phone_number_id: Option<String>,
}

/// One status of one message Herald sent.
#[derive(Debug, Deserialize)]
pub(super) struct Status {
    /// The wamid Meta answered the send with.
    pub(super) id: String,
    pub(super) status: String,
    /// Unix seconds, as a string.
    pub(super) timestamp: Option<String>,
    #[serde(default)]
    pub(super) errors: Vec<StatusError>,
}

#[derive(Debug, Deserialize)]
pub(super) struct StatusError {
    pub(super) code: Option<i64>,
    pub(super) title: Option<String>,
    pub(super) message: Option<String>,
    pub(super) error_data: Option<ErrorData>,
}

/// A message a customer sent to the business number.
#[derive(Debug, Deserialize)]
pub(super) struct InboundWire {
    pub(super) id: String,
    pub(super) from: String,
    pub(super) timestamp: Option<String>,
    pub(super) text: Option<InboundText>,
    pub(super) image: Option<InboundMedia>,
    pub(super) video: Option<InboundMedia>,
    pub(super) document: Option<InboundMedia>,
    pub(super) audio: Option<InboundMedia>,
    pub(super) sticker: Option<InboundMedia>,
    /// A template's quick-reply button.
    pub(super) button: Option<InboundButton>,
    /// An interactive message's reply button or list row.
    pub(super) interactive: Option<InboundInteractive>,
    pub(super) reaction: Option<InboundReaction>,
}

impl InboundWire {
    /// The ids of the media the message carries (Meta's, valid for the Graph API).
    pub(super) fn media_ids(&self) -> impl Iterator<Item = &str> {
        [
            &self.image,
            &self.video,
            &self.document,
            &self.audio,
            &self.sticker,
        ]
        .into_iter()
        .flatten()
        .filter_map(|m| m.id.as_deref())
        // Ids are digits; anything else is not put into a URL.
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
    }

    /// What the customer said, whichever way: text, a button or list choice (its title), a
    /// reaction (its emoji), or a media caption.
    pub(super) fn body(self) -> String {
        let interactive = self
            .interactive
            .and_then(|i| i.button_reply.or(i.list_reply))
            .map(|r| r.title);
        self.text
            .map(|t| t.body)
            .or_else(|| self.button.map(|b| b.text))
            .or(interactive)
            .or_else(|| self.reaction.and_then(|r| r.emoji))
            .or_else(|| {
                [self.image, self.video, self.document]
                    .into_iter()
                    .flatten()
                    .find_map(|media| media.caption)
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct InboundText {
    pub(super) body: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct InboundButton {
    pub(super) text: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct InboundInteractive {
    pub(super) button_reply: Option<InboundChoice>,
    pub(super) list_reply: Option<InboundChoice>,
}

#[derive(Debug, Deserialize)]
pub(super) struct InboundChoice {
    pub(super) title: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct InboundReaction {
    /// Absent when a reaction is taken back.
    pub(super) emoji: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct InboundMedia {
    pub(super) id: Option<String>,
    pub(super) caption: Option<String>,
}

/// The Herald status a WhatsApp status reports, for those that move a `sent` message on.
/// `sent` says nothing we did not know when Meta answered the send.
pub(super) fn receipt_status(whatsapp: &str) -> Option<MessageStatus> {
    match whatsapp {
        "delivered" => Some(MessageStatus::Delivered),
        "read" => Some(MessageStatus::Read),
        "failed" => Some(MessageStatus::Failed),
        _ => None,
    }
}

/// The code Meta gives when the 24-hour customer service window is closed.
pub(super) const WINDOW_CLOSED: i64 = 131_047;

/// What to tell a client whose message failed with `code`: for 131047, that the window is
/// closed and how to send a template instead; otherwise Meta's own words.
pub(super) fn explain(code: i64, meta_says: &str) -> String {
    if code == WINDOW_CLOSED {
        format!(
            "WhatsApp {code}: the 24-hour customer service window has closed (the recipient \
             last wrote more than 24 hours ago), so WhatsApp only delivers an approved template \
             message now. Send a template message instead: POST /api/messaging/send-message/ \
             with \"channel\": \"whatsapp\" and \"whatsapp_template\": {{\"name\", \"language\", \
             \"variables\"}}. (Meta: {meta_says})"
        )
    } else {
        format!("WhatsApp {code}: {meta_says}")
    }
}

/// Codes that will fail again however often they are retried.
const PERMANENT: &[i64] = &[
    100,     // invalid parameter
    190,     // access token expired or invalid: no retry fixes it (see `classify`)
    131_008, // a required parameter is missing
    131_009, // a parameter value is invalid
    131_026, // message undeliverable (not on WhatsApp, old app, terms not accepted)
    131_030, // recipient not in the allowed list (test numbers)
    WINDOW_CLOSED,
    131_051, // unsupported message type
    132_000, // template parameter count mismatch
    132_001, // template does not exist (in that language)
    132_005, // template text too long once filled
    132_007, // template format character policy violated
    132_012, // template parameter format mismatch
    132_015, // template paused
    132_016, // template disabled
    132_018, // template parameter with line breaks, tabs or long spaces
];

/// Codes worth retrying even though Meta answered with a 4xx: throttling (Meta signals it as
/// a 400 with 130429), and its own temporary failures.
const TRANSIENT: &[i64] = &[
    1,       // unknown API error
    2,       // service temporarily unavailable
    4,       // application request limit reached
    80_007,  // business account rate limit
    130_429, // throughput limit of the phone number
    131_000, // something went wrong
    131_016, // service unavailable
    131_048, // spam rate limit
    131_056, // too many messages to the same recipient (pair rate limit)
    133_004, // server temporarily unavailable
];

/// Classifies an answer that was not a success. Known codes decide; otherwise the HTTP status
/// does: 429, 408 and 5xx are worth retrying, other 4xx are not (the same request fails the
/// same way). 401 and 190 are permanent: a token Meta refuses stays refused until someone
/// changes the setting, and failing at once says so sooner than five retries would.
pub(super) fn classify(
    status: u16,
    body: &ErrorEnvelope,
    retry_after: Option<Duration>,
) -> ProviderError {
    let error = body.error.as_ref();
    let meta_says = error
        .map(|e| {
            let message = e.message.clone().unwrap_or_default();
            match e.error_data.as_ref().and_then(|d| d.details.as_deref()) {
                Some(details) if !details.is_empty() && details != message => {
                    format!("{message} ({details})")
                }
                _ => message,
            }
        })
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("the Cloud API answered HTTP {status}"));
    let transient_status = status == 429 || status == 408 || status >= 500;
    match error.and_then(|e| e.code) {
        Some(code) if PERMANENT.contains(&code) => ProviderError::Permanent {
            code: code.to_string(),
            message: token_hint(code, explain(code, &meta_says)),
        },
        Some(code) if TRANSIENT.contains(&code) || transient_status => ProviderError::Transient {
            code: code.to_string(),
            message: explain(code, &meta_says),
            retry_after,
        },
        Some(code) => ProviderError::Permanent {
            code: code.to_string(),
            message: explain(code, &meta_says),
        },
        None if transient_status => ProviderError::Transient {
            code: format!("http_{status}"),
            message: meta_says,
            retry_after,
        },
        None => ProviderError::Permanent {
            code: format!("http_{status}"),
            message: token_hint(i64::from(status), meta_says),
        },
    }
}

/// Says which setting to fix when Meta refused the token.
fn token_hint(code: i64, message: String) -> String {
    if code == 190 || code == 401 {
        format!("{message} (check providers.whatsapp_cloud.access_token)")
    } else {
        message
    }
}

/// A failed status's error, as Herald records it: Meta's code and an explanation.
pub(super) fn status_error(errors: &[StatusError]) -> (Option<String>, Option<String>) {
    let Some(first) = errors.first() else {
        return (None, None);
    };
    let meta_says = [
        first.message.as_deref(),
        first.title.as_deref(),
        first.error_data.as_ref().and_then(|d| d.details.as_deref()),
    ]
    .into_iter()
    .flatten()
    .find(|s| !s.is_empty())
    .unwrap_or("failed")
    .to_owned();
    match first.code {
        Some(code) => (Some(code.to_string()), Some(explain(code, &meta_says))),
        None => (None, Some(meta_says)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: i64) -> ErrorEnvelope {
        ErrorEnvelope {
            error: Some(GraphError {
                code: Some(code),
                message: Some("m".into()),
                error_data: None,
            }),
        }
    }

    #[test]
    fn each_mapped_code_is_transient_or_permanent() {
        for code in [
            131_026, 131_051, 132_000, 132_001, 131_047, 190, 100, 131_030,
        ] {
            let e = classify(400, &body(code), None);
            assert!(
                matches!(&e, ProviderError::Permanent { code: c, .. } if *c == code.to_string()),
                "{code}: {e:?}"
            );
        }
        for (status, code) in [(400, 130_429), (400, 131_056), (500, 131_000), (503, 2)] {
            let e = classify(status, &body(code), Some(Duration::from_secs(3)));
            assert!(
                matches!(&e, ProviderError::Transient { retry_after: Some(d), code: c, .. }
                    if d.as_secs() == 3 && *c == code.to_string()),
                "{code}: {e:?}"
            );
        }
        // An unknown code: the status decides.
        assert!(matches!(
            classify(502, &body(999_999), None),
            ProviderError::Transient { .. }
        ));
        assert!(matches!(
            classify(400, &body(999_999), None),
            ProviderError::Permanent { .. }
        ));
        assert!(matches!(
            classify(503, &ErrorEnvelope::default(), None),
            ProviderError::Transient { .. }
        ));
        let e = classify(401, &ErrorEnvelope::default(), None);
        assert!(
            matches!(&e, ProviderError::Permanent { code, message } if code == "http_401" && message.contains("access_token")),
            "{e:?}"
        );
    }

    #[test]
    fn a_closed_window_names_the_template_route() {
        let e = classify(400, &body(131_047), None);
        let ProviderError::Permanent { message, .. } = e else {
            panic!("{e:?}")
        };
        assert!(message.contains("24-hour"), "{message}");
        assert!(message.contains("whatsapp_template"), "{message}");
        assert!(
            message.contains("/api/messaging/send-message/"),
            "{message}"
        );
    }

    #[test]
    fn the_message_is_serialized_as_meta_wants_it() {
        let out = Outgoing {
            messaging_product: "whatsapp",
            recipient_type: "individual",
            to: "14155551234",
            content: Content::Image {
                image: Media {
                    link: "https://x/a.png",
                    caption: Some("hi"),
                    filename: None,
                },
            },
            biz_opaque_callback_data: "msg_1",
        };
        let json = serde_json::to_value(&out).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({
                "messaging_product": "whatsapp", "recipient_type": "individual",
                "to": "14155551234", "type": "image",
                "image": {"link": "https://x/a.png", "caption": "hi"},
                "biz_opaque_callback_data": "msg_1",
            })
        );
    }

    #[test]
    fn statuses_map_forward_only_where_they_say_something_new() {
        assert_eq!(receipt_status("delivered"), Some(MessageStatus::Delivered));
        assert_eq!(receipt_status("read"), Some(MessageStatus::Read));
        assert_eq!(receipt_status("failed"), Some(MessageStatus::Failed));
        for s in ["sent", "deleted", "warning", ""] {
            assert_eq!(receipt_status(s), None, "{s}");
        }
    }
}
