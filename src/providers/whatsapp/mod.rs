//! Meta's WhatsApp Business Cloud API: sends text, media (by link) and template messages as
//! a JSON POST to `{base_url}/{api_version}/{phone_number_id}/messages` with a bearer token,
//! answers the webhook verification GET, and takes signed webhook POSTs (statuses and
//! inbound messages).
//!
//! Inbound media are stored as their Graph API URLs (`{base_url}/{api_version}/{media id}`),
//! which answer a short-lived download link to a GET with the access token; Herald does not
//! download them itself.
//!
//! Not supported yet: media in template headers and button parameters; uploading media to
//! Meta (media go by link). The Cloud API has no idempotency key, so a crash
//! between Meta's answer and our record sends the message again; and messages cannot be
//! looked up afterwards, so a status webhook that never comes leaves a message `sent`.

pub mod signature;
mod wire;

use super::http::{self, retry_after};
use super::{
    Accepted, InboundMessage, Provider, ProviderError, SendRequest, WebhookError, WebhookEvents,
    WebhookRequest,
};
use crate::config::Settings;
use crate::domain::Timestamp;
use crate::store::StatusUpdate;
use anyhow::Context;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use std::num::NonZeroU32;
use std::time::Duration;
use wire::{Content, ErrorEnvelope, Outgoing};

pub const NAME: &str = "whatsapp_cloud";

/// Where Meta sends the verification GET and the event POSTs (SPEC §5).
pub const WEBHOOK_PATH: &str = "/webhooks/whatsapp";

/// Sent with every request; Meta's OpenAPI description allows `name/x.y.z`.
const USER_AGENT: &str = concat!("Herald/", env!("CARGO_PKG_VERSION"));

/// From the Cloud API's hand-over to the handset: seconds for a phone that is online.
const TYPICAL_DELIVERY: Duration = Duration::from_secs(5);

pub struct WhatsappProvider {
    client: reqwest::Client,
    messages_url: String,
    /// `{base_url}/{api_version}`: an inbound medium is the Graph API object under it.
    graph_url: String,
    access_token: SecretString,
    app_secret: SecretString,
    verify_token: SecretString,
    phone_number_id: String,
    sender_rate: Option<NonZeroU32>,
}

/// How a media link is sent, by its file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaKind {
    Image,
    Video,
    Audio,
    Document,
}

/// The phone number id a webhook notification concerns (its first entry's), read before its
/// signature is checked only to find whose app secret to check it with.
pub fn notified_phone_number_id(body: &[u8]) -> Option<String> {
    let notification: wire::Notification = serde_json::from_slice(body).ok()?;
    notification
        .entry
        .into_iter()
        .flat_map(|e| e.changes)
        .find_map(|c| c.value?.metadata?.phone_number_id)
}

impl WhatsappProvider {
    /// Builds the adapter from validated settings, with one HTTP client whose keep-alive
    /// pool holds as many connections as deliveries may be in flight.
    ///
    /// # Errors
    /// The HTTP client cannot be built (no TLS backend).
    pub fn from_settings(settings: &Settings) -> anyhow::Result<WhatsappProvider> {
        let w = &settings.providers.whatsapp_cloud;
        let timeout = Duration::from_millis(w.timeout_ms);
        let client = super::http::client_builder(settings.workers.concurrency, timeout)
            .user_agent(USER_AGENT)
            .build()
            .context("could not build the HTTP client for the WhatsApp Cloud API")?;
        let base = w.base_url.trim_end_matches('/');
        Ok(WhatsappProvider {
            client,
            messages_url: format!("{base}/{}/{}/messages", w.api_version, w.phone_number_id),
            graph_url: format!("{base}/{}", w.api_version),
            access_token: w.access_token.clone(),
            app_secret: w.app_secret.clone(),
            verify_token: w.verify_token.clone(),
            phone_number_id: w.phone_number_id.clone(),
            sender_rate: NonZeroU32::new(w.sender_per_second),
        })
    }

    /// Answers Meta's webhook verification GET: the challenge to echo when `mode` is
    /// `subscribe` and `token` is our verify token, else `None` (answer 403).
    pub fn verify_subscription<'a>(
        &self,
        mode: Option<&str>,
        token: Option<&str>,
        challenge: Option<&'a str>,
    ) -> Option<&'a str> {
        let token_ok = signature::verify_token_matches(self.verify_token.expose_secret(), token?);
        (mode == Some("subscribe") && token_ok)
            .then_some(challenge)
            .flatten()
    }

    /// The message body Meta is sent for `request`.
    fn outgoing<'a>(&self, request: &SendRequest<'a>) -> Outgoing<'a> {
        let content = if let Some(t) = request.template {
            let parameters: Vec<wire::Parameter<'a>> = t
                .variables()
                .iter()
                .map(|v| wire::Parameter {
                    kind: "text",
                    text: v.as_str(),
                })
                .collect();
            let components = if parameters.is_empty() {
                Vec::new()
            } else {
                vec![wire::Component {
                    kind: "body",
                    parameters,
                }]
            };
            Content::Template {
                template: wire::Template {
                    name: t.name(),
                    language: wire::Language {
                        policy: "deterministic",
                        code: t.language(),
                    },
                    components,
                },
            }
        } else if let Some(link) = request.media_url {
            let caption = Some(request.body).filter(|b| !b.is_empty());
            let media = |caption, filename| wire::Media {
                link,
                caption,
                filename,
            };
            match media_kind(link) {
                MediaKind::Image => Content::Image {
                    image: media(caption, None),
                },
                MediaKind::Video => Content::Video {
                    video: media(caption, None),
                },
                // WhatsApp audio takes no caption: the text is not sent with it.
                MediaKind::Audio => Content::Audio {
                    audio: media(None, None),
                },
                MediaKind::Document => Content::Document {
                    document: media(caption, file_name(link)),
                },
            }
        } else {
            Content::Text {
                text: wire::Text {
                    preview_url: false,
                    body: request.body,
                },
            }
        };
        Outgoing {
            messaging_product: "whatsapp",
            recipient_type: "individual",
            to: request.to.strip_prefix('+').unwrap_or(request.to),
            content,
            biz_opaque_callback_data: request.message_id.as_str(),
        }
    }

    async fn post(&self, body: &Outgoing<'_>) -> Result<Accepted, ProviderError> {
        let response = self
            .client
            .post(&self.messages_url)
            .bearer_auth(self.access_token.expose_secret())
            .json(body)
            .send()
            .await
            .map_err(|e| http::transport("the WhatsApp Cloud API", &e))?;
        let status = response.status().as_u16();
        let wait = retry_after(response.headers());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| http::transport("the WhatsApp Cloud API", &e))?;
        if (200..300).contains(&status) {
            let answer: Option<wire::Answer> = serde_json::from_slice(&bytes).ok();
            return answer
                .and_then(|a| a.messages.into_iter().next())
                .map(|m| Accepted {
                    provider_message_id: m.id,
                })
                .ok_or_else(|| ProviderError::Transient {
                    code: "whatsapp_bad_answer".into(),
                    message: "the WhatsApp Cloud API answered without a message id".into(),
                    retry_after: None,
                });
        }
        let body: ErrorEnvelope = serde_json::from_slice(&bytes).unwrap_or_default();
        Err(wire::classify(status, &body, wait))
    }

    fn parse_notification(&self, body: &[u8]) -> Result<WebhookEvents, WebhookError> {
        let notification: wire::Notification =
            serde_json::from_slice(body).map_err(|e| WebhookError::Malformed {
                field: "body".into(),
                reason: format!("not a WhatsApp webhook notification: {e}"),
            })?;
        let mut events = WebhookEvents::default();
        // Every entry and every change: one POST may carry several.
        for change in notification.entry.into_iter().flat_map(|e| e.changes) {
            if change.field.as_deref().is_some_and(|f| f != "messages") {
                continue;
            }
            let Some(value) = change.value else { continue };
            for s in value.statuses {
                let Some(status) = wire::receipt_status(&s.status) else {
                    continue;
                };
                let (error_code, error_message) = wire::status_error(&s.errors);
                events.receipts.push(StatusUpdate {
                    provider: NAME,
                    provider_message_id: s.id,
                    status,
                    // Meta's time of the event (seconds); the store keeps histories in order.
                    at: unix_seconds(s.timestamp.as_deref()).unwrap_or_else(Timestamp::now),
                    error_code,
                    error_message,
                });
            }
            let to = value
                .metadata
                .and_then(|m| m.display_phone_number)
                .map(|n| format!("+{}", n.trim_start_matches('+')))
                .unwrap_or_default();
            for m in value.messages {
                let provider_message_id = m.id.clone();
                let from = format!("+{}", m.from.trim_start_matches('+'));
                let received_at =
                    unix_seconds(m.timestamp.as_deref()).unwrap_or_else(Timestamp::now);
                // Meta gives a medium's id, not a public URL: the Graph API object, which
                // answers the download link to a GET with the access token.
                let media_urls = m
                    .media_ids()
                    .map(|id| format!("{}/{id}", self.graph_url))
                    .collect();
                events.inbound.push(InboundMessage {
                    provider: NAME,
                    provider_message_id,
                    from,
                    to: to.clone(),
                    body: m.body(),
                    media_urls,
                    received_at,
                });
            }
        }
        Ok(events)
    }
}

/// `"1700000000"` (Meta's timestamps) as a time.
fn unix_seconds(value: Option<&str>) -> Option<Timestamp> {
    let seconds: i64 = value?.trim().parse().ok()?;
    Some(Timestamp::from_millis(seconds.checked_mul(1000)?))
}

/// The last path segment of a URL, without query or fragment.
fn file_name(url: &str) -> Option<&str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let after_scheme = path.split_once("://").map_or(path, |(_, rest)| rest);
    // No '/' after the host: the URL names no file.
    let (_, path) = after_scheme.split_once('/')?;
    path.rsplit('/').next().filter(|name| !name.is_empty())
}

/// Image, video or audio by the file extensions WhatsApp takes for each; anything else
/// (PDFs, spreadsheets, unknown or no extension) goes as a document.
fn media_kind(url: &str) -> MediaKind {
    let extension = file_name(url)
        .and_then(|name| name.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase());
    match extension.as_deref() {
        Some("jpg" | "jpeg" | "png") => MediaKind::Image,
        Some("mp4" | "3gp") => MediaKind::Video,
        Some("aac" | "amr" | "mp3" | "m4a" | "ogg" | "opus") => MediaKind::Audio,
        _ => MediaKind::Document,
    }
}

impl Provider for WhatsappProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn send<'a>(
        &'a self,
        request: SendRequest<'a>,
    ) -> BoxFuture<'a, Result<Accepted, ProviderError>> {
        Box::pin(async move {
            let body = self.outgoing(&request);
            self.post(&body).await
        })
    }

    fn default_sender(&self) -> &str {
        &self.phone_number_id
    }

    /// Every message goes out from the configured phone number: the path names it, so a
    /// message's own `sender_id` cannot change it (nor escape its rate limit).
    fn sender<'a>(&'a self, _requested: Option<&'a str>) -> &'a str {
        &self.phone_number_id
    }

    fn sender_rate(&self, _sender: &str) -> Option<NonZeroU32> {
        self.sender_rate
    }

    /// 130429 (the phone number's throughput) and 80007 (the business account's rate) hold
    /// for every message from the number; 131056 concerns one recipient only, 4 the app.
    fn throttles_sender(&self, error: &ProviderError) -> bool {
        matches!(error, ProviderError::Transient { code, .. } if code == "130429" || code == "80007" || code == "http_429")
    }

    fn typical_delivery(&self) -> Option<Duration> {
        Some(TYPICAL_DELIVERY)
    }

    /// One webhook carries statuses and inbound messages alike, whichever `kind` the route
    /// names.
    fn parse_webhook(&self, request: WebhookRequest<'_>) -> Result<WebhookEvents, WebhookError> {
        let signature = request
            .headers
            .get("x-hub-signature-256")
            .and_then(|v| v.to_str().ok())
            .ok_or(WebhookError::BadSignature(
                "the request carries no X-Hub-Signature-256 header",
            ))?;
        if !signature::verify(self.app_secret.expose_secret(), request.body, signature) {
            return Err(WebhookError::BadSignature(
                "X-Hub-Signature-256 does not match the body (check providers.whatsapp_cloud.app_secret)",
            ));
        }
        self.parse_notification(request.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_go_by_the_kind_their_extension_names() {
        let cases = [
            ("https://cdn.example.com/a.JPG", MediaKind::Image),
            ("https://cdn.example.com/x/y.png?sig=1", MediaKind::Image),
            ("https://cdn.example.com/clip.mp4#t=1", MediaKind::Video),
            ("https://cdn.example.com/voice.ogg", MediaKind::Audio),
            ("https://cdn.example.com/song.mp3", MediaKind::Audio),
            ("https://cdn.example.com/invoice.pdf", MediaKind::Document),
            ("https://cdn.example.com/noext", MediaKind::Document),
            ("https://cdn.example.com/", MediaKind::Document),
            ("https://cdn.example.com", MediaKind::Document),
            ("https://cdn.example.com/a.png/", MediaKind::Document),
        ];
        for (url, kind) in cases {
            assert_eq!(media_kind(url), kind, "{url}");
        }
        assert_eq!(
            file_name("https://cdn.example.com/d/invoice.pdf?x=1"),
            Some("invoice.pdf")
        );
        assert_eq!(file_name("https://cdn.example.com"), None);
    }

    #[test]
    fn only_number_wide_throttling_pauses_the_sender() {
        let settings = Settings::load_with(
            None,
            &["[providers.whatsapp_cloud]\nphone_number_id = \"1\"\n"],
        );
        let Ok(settings) = settings else {
            panic!("{settings:?}")
        };
        let Ok(provider) = WhatsappProvider::from_settings(&settings) else {
            panic!("the adapter builds")
        };
        let transient = |code: &str| ProviderError::Transient {
            code: code.into(),
            message: String::new(),
            retry_after: Some(Duration::from_secs(1)),
        };
        assert!(provider.throttles_sender(&transient("130429")));
        assert!(provider.throttles_sender(&transient("80007")));
        assert!(!provider.throttles_sender(&transient("131056")));
        assert!(!provider.throttles_sender(&transient("131000")));
    }

    #[test]
    fn meta_timestamps_are_read_as_unix_seconds() {
        assert_eq!(
            unix_seconds(Some("1700000000")),
            Some(Timestamp::from_millis(1_700_000_000_000))
        );
        assert_eq!(unix_seconds(Some("soon")), None);
        assert_eq!(unix_seconds(Some("99999999999999999")), None);
        assert_eq!(unix_seconds(None), None);
    }
}
