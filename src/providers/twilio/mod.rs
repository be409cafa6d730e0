//! Twilio Programmable Messaging: sends as a form-encoded POST to
//! `{base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json` with Basic auth, takes its
//! signed status callbacks, and looks messages up with `GET …/Messages/{Sid}.json`.
//!
//! Twilio has no idempotency key for sends, so a send left in doubt (Herald died between
//! handing the message over and recording Twilio's answer, or the answer never came) is
//! searched for before it is sent again: `GET …/Messages.json?To=…&From=…&DateSent>=<day>`
//! (`TwilioProvider::search`), matched on recipient, sender, body and creation time.
//!
//! Incoming messages arrive at [`INBOUND_PATH`], signed the same way.
//!
//! Not supported yet: WhatsApp through Twilio; `SendAt`.

pub mod signature;
mod wire;

use super::http::{self, retry_after};
use super::{
    Accepted, InDoubt, InboundMessage, Lookup, Provider, ProviderError, SendRequest, SentMatch,
    WebhookError, WebhookEvents, WebhookKind, WebhookRequest,
};
use crate::config::Settings;
use crate::domain::Timestamp;
use crate::store::StatusUpdate;
use anyhow::Context;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;
use wire::{ErrorBody, MessagePage, MessageResource};

pub const NAME: &str = "twilio";

/// Where Twilio posts status callbacks (SPEC §5); `StatusCallback` points here.
pub const STATUS_PATH: &str = "/webhooks/twilio/status";

/// Where Twilio posts incoming messages (a number's or Messaging Service's messaging
/// webhook, set in the Twilio Console).
pub const INBOUND_PATH: &str = "/webhooks/twilio/inbound";

/// An in-doubt search accepts a message Twilio created this long before the attempt started:
/// Twilio's `date_created` has whole seconds, and its clock is not ours.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Pages of a recipient's messages an in-doubt search reads at most (Twilio's default page
/// is 50 messages, newest first: the attempt looked for is recent, so it is on the first).
const SEARCH_PAGES: usize = 5;

/// Twilio's bounds for `ValidityPeriod`, in seconds.
const VALIDITY_MIN: i64 = 1;
const VALIDITY_MAX: i64 = 36_000;

pub struct TwilioProvider {
    client: reqwest::Client,
    /// `base_url` without a trailing slash: `next_page_uri`s are relative to it.
    api_base: String,
    account_sid: String,
    auth_token: SecretString,
    messages_url: String,
    message_url_prefix: String,
    public_url: String,
    status_callback: String,
    default_sender: String,
    sender_rate: Option<NonZeroU32>,
    /// Senders with a rate of their own instead of `sender_rate` (None: not limited).
    sender_rates: HashMap<String, Option<NonZeroU32>>,
}

impl TwilioProvider {
    /// Builds the adapter from validated settings, with one HTTP client whose keep-alive
    /// pool holds as many connections as deliveries may be in flight.
    ///
    /// # Errors
    /// The HTTP client cannot be built (no TLS backend).
    pub fn from_settings(settings: &Settings) -> anyhow::Result<TwilioProvider> {
        let t = &settings.providers.twilio;
        let timeout = Duration::from_millis(t.timeout_ms);
        let client = super::http::client_builder(settings.workers.concurrency, timeout)
            .build()
            .context("could not build the HTTP client for Twilio")?;
        let base = t.base_url.trim_end_matches('/');
        let account = format!("{base}/2010-04-01/Accounts/{}", t.account_sid);
        let public_url = settings.server.public_url.trim_end_matches('/').to_owned();
        let default_sender = if t.from.is_empty() {
            t.messaging_service_sid.clone()
        } else {
            t.from.clone()
        };
        Ok(TwilioProvider {
            client,
            api_base: base.to_owned(),
            account_sid: t.account_sid.clone(),
            auth_token: t.auth_token.clone(),
            messages_url: format!("{account}/Messages.json"),
            message_url_prefix: format!("{account}/Messages/"),
            status_callback: format!("{public_url}{STATUS_PATH}"),
            public_url,
            default_sender,
            sender_rate: NonZeroU32::new(t.sender_per_second),
            sender_rates: t
                .sender_rates
                .iter()
                .map(|(sender, rate)| (sender.clone(), NonZeroU32::new(*rate)))
                .collect(),
        })
    }

    /// The form of one send, in the order Twilio documents the fields.
    fn form<'a>(
        &'a self,
        request: &SendRequest<'a>,
        now: Timestamp,
    ) -> Vec<(&'static str, String)> {
        let sender = if is_messaging_service(request.from) {
            "MessagingServiceSid"
        } else {
            "From"
        };
        let mut form = vec![
            ("To", request.to.to_owned()),
            (sender, request.from.to_owned()),
            ("Body", request.body.to_owned()),
            ("StatusCallback", self.status_callback.clone()),
        ];
        if let Some(media) = request.media_url {
            form.push(("MediaUrl", media.to_owned()));
        }
        form.push((
            "ValidityPeriod",
            validity_seconds(request.expires_at, now).to_string(),
        ));
        form
    }

    /// Reads an answer; a success body is the Message resource, anything else an error.
    async fn answer(
        &self,
        response: reqwest::Response,
    ) -> Result<Result<MessageResource, u16>, ProviderError> {
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(|e| transport(&e))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes)
                .map(Ok)
                .map_err(|_| ProviderError::Transient {
                    code: "twilio_bad_answer".into(),
                    message: "Twilio answered with a body that is not a Message resource".into(),
                    retry_after: None,
                });
        }
        if status == 404 {
            return Ok(Err(status));
        }
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        Err(wire::classify(status, &body, retry_after))
    }

    /// Searches Twilio for the message an in-doubt attempt may have created.
    ///
    /// First `To` (and `From`, unless the sender is a Messaging Service, whose messages carry
    /// the number it picked) with `DateSent>=` the attempt's day, following `next_page_uri`
    /// for up to [`SEARCH_PAGES`] pages. A message Twilio still holds (`queued`,
    /// `accepted`) has no `date_sent` yet and is not listed by that filter, so when it
    /// finds nothing the newest page without the date filter is read as well.
    async fn search(&self, request: &SendRequest<'_>, attempt_started: Timestamp) -> InDoubt {
        let not_before = attempt_started.minus(CLOCK_SKEW);
        let mut filters = vec![("To", request.to.to_owned())];
        if !is_messaging_service(request.from) {
            filters.push(("From", request.from.to_owned()));
        }
        let mut dated = filters.clone();
        dated.push(("DateSent>", not_before.day()));
        let mut found = Vec::new();
        for (query, pages) in [(dated, SEARCH_PAGES), (filters, 1)] {
            let first = self.client.get(&self.messages_url).query(&query);
            match self.list(first, pages, request, not_before).await {
                Ok(matches) => found.extend(matches),
                Err(e) => return InDoubt::Failed(e),
            }
            if !found.is_empty() {
                break;
            }
        }
        if found.is_empty() {
            return InDoubt::NotFound;
        }
        found.sort_by_key(|(created, _)| *created);
        let mut seen = std::collections::HashSet::new();
        InDoubt::Found(
            found
                .into_iter()
                .filter(|(_, m)| seen.insert(m.provider_message_id.clone()))
                .map(|(_, m)| m)
                .collect(),
        )
    }

    /// Reads up to `pages` pages of a message list from `first` on, keeping the messages
    /// that match `request`, with their creation time.
    async fn list(
        &self,
        first: reqwest::RequestBuilder,
        pages: usize,
        request: &SendRequest<'_>,
        not_before: Timestamp,
    ) -> Result<Vec<(Timestamp, SentMatch)>, ProviderError> {
        let mut matches = Vec::new();
        let mut next = Some(first);
        let mut read = 0;
        while let Some(builder) = next.take() {
            let response = builder
                .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
                .send()
                .await
                .map_err(|e| transport(&e))?;
            let page = self.page(response).await?;
            read += 1;
            for resource in &page.messages {
                if let Some(created) = matching(resource, request, not_before) {
                    matches.push((
                        created,
                        SentMatch {
                            provider_message_id: resource.sid.clone(),
                            receipt: self.status_update(resource),
                        },
                    ));
                }
            }
            // Only a page of this account's Messages list is followed (the path is
            // Twilio's, but the credentials go wherever it points).
            let prefix = format!("/2010-04-01/Accounts/{}/Messages.json", self.account_sid);
            if read < pages
                && let Some(uri) = page.next_page_uri.filter(|u| u.starts_with(&prefix))
            {
                next = Some(self.client.get(format!("{}{uri}", self.api_base)));
            }
        }
        Ok(matches)
    }

    /// Reads a list page; anything but a page is a failure to ask (retried later).
    async fn page(&self, response: reqwest::Response) -> Result<MessagePage, ProviderError> {
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(|e| transport(&e))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|_| ProviderError::Transient {
                code: "twilio_bad_answer".into(),
                message: "Twilio answered a message search with a body that is not a page".into(),
                retry_after: None,
            });
        }
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        Err(wire::classify(status, &body, retry_after))
    }

    fn status_update(&self, resource: &MessageResource) -> Option<StatusUpdate> {
        let status = wire::receipt_status(resource.status.as_deref()?)?;
        Some(StatusUpdate {
            provider: NAME,
            provider_message_id: resource.sid.clone(),
            status,
            at: Timestamp::now(),
            error_code: resource.error_code.map(wire::error_code),
            error_message: resource.error_message.clone(),
        })
    }

    /// The form fields of a webhook request, once its `X-Twilio-Signature` is checked.
    fn verified_form(
        &self,
        request: &WebhookRequest<'_>,
    ) -> Result<Vec<(String, String)>, WebhookError> {
        let signature = request
            .headers
            .get("x-twilio-signature")
            .and_then(|v| v.to_str().ok())
            .ok_or(WebhookError::BadSignature(
                "the request carries no X-Twilio-Signature header",
            ))?;
        let params: Vec<(String, String)> = serde_urlencoded::from_bytes(request.body)
            .map_err(|_| WebhookError::BadSignature("the body is not a signed form"))?;
        let url = format!("{}{}", self.public_url, request.path_and_query);
        if !signature::verify(self.auth_token.expose_secret(), &url, &params, signature) {
            return Err(WebhookError::BadSignature(
                "X-Twilio-Signature does not match this request (check server.public_url and the auth token)",
            ));
        }
        Ok(params)
    }

    /// An incoming message (Twilio's messaging webhook): `From`, `To`, `Body`, and media as
    /// `MediaUrl0…` (`NumMedia` of them).
    fn parse_inbound(&self, request: WebhookRequest<'_>) -> Result<WebhookEvents, WebhookError> {
        let params = self.verified_form(&request)?;
        let field = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let required = |name: &str| {
            field(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| WebhookError::Malformed {
                    field: name.to_owned(),
                    reason: format!("an incoming message carries `{name}`"),
                })
        };
        let sid = field("MessageSid")
            .or_else(|| field("SmsSid"))
            .filter(|v| !v.is_empty())
            .ok_or_else(|| WebhookError::Malformed {
                field: "MessageSid".into(),
                reason: "an incoming message carries `MessageSid`".into(),
            })?;
        let count: usize = field("NumMedia")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
            .min(10);
        let media_urls = (0..count)
            .filter_map(|i| field(&format!("MediaUrl{i}")))
            .map(str::to_owned)
            .collect();
        let mut events = WebhookEvents::default();
        events.inbound.push(InboundMessage {
            provider: NAME,
            provider_message_id: sid.to_owned(),
            from: required("From")?.to_owned(),
            to: field("To").unwrap_or_default().to_owned(),
            body: field("Body").unwrap_or_default().to_owned(),
            media_urls,
            received_at: Timestamp::now(),
        });
        Ok(events)
    }

    fn parse_status_callback(
        &self,
        request: WebhookRequest<'_>,
    ) -> Result<WebhookEvents, WebhookError> {
        let params = self.verified_form(&request)?;
        let field = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let missing = |name: &str| WebhookError::Malformed {
            field: name.to_owned(),
            reason: format!("a status callback carries `{name}`"),
        };
        let sid = field("MessageSid").ok_or_else(|| missing("MessageSid"))?;
        let status = field("MessageStatus").ok_or_else(|| missing("MessageStatus"))?;
        let error_code = match field("ErrorCode") {
            Some(code) => Some(code.parse::<i64>().map(wire::error_code).map_err(|_| {
                WebhookError::Malformed {
                    field: "ErrorCode".into(),
                    reason: "`ErrorCode` is a number".into(),
                }
            })?),
            None => None,
        };
        let mut events = WebhookEvents::default();
        if let Some(status) = wire::receipt_status(status) {
            events.receipts.push(StatusUpdate {
                provider: NAME,
                provider_message_id: sid.to_owned(),
                status,
                // Callbacks carry no time of their own (`RawDlrDoneDate` is the carrier's,
                // minute-precise and not on every receipt): the time we heard is the time.
                at: Timestamp::now(),
                error_code,
                error_message: field("ErrorMessage").map(str::to_owned),
            });
        }
        Ok(events)
    }
}

/// When a listed message is the one `request` may have created: sent by the API, to the
/// same recipient, from the same sender (or Messaging Service), with the same body, created
/// at or after `not_before`. Returns its creation time. A message without a readable
/// `date_created` never matches: taking someone else's send for ours would lose ours.
fn matching(
    resource: &MessageResource,
    request: &SendRequest<'_>,
    not_before: Timestamp,
) -> Option<Timestamp> {
    if resource
        .direction
        .as_deref()
        .is_some_and(|d| d != "outbound-api")
    {
        return None;
    }
    let sender = if is_messaging_service(request.from) {
        resource.messaging_service_sid.as_deref()
    } else {
        resource.from.as_deref()
    };
    if resource.to.as_deref() != Some(request.to)
        || sender != Some(request.from)
        || resource.body.as_deref() != Some(request.body)
    {
        return None;
    }
    let created = chrono::DateTime::parse_from_rfc2822(resource.date_created.as_deref()?).ok()?;
    let created = Timestamp::from_millis(created.timestamp_millis());
    (created >= not_before).then_some(created)
}

/// A Messaging Service SID (`MG` + 32 hex digits) goes in `MessagingServiceSid`, anything
/// else (a number, an alphanumeric sender id) in `From`.
pub(crate) fn is_messaging_service(sender: &str) -> bool {
    sender.len() == 34
        && sender.starts_with("MG")
        && sender
            .get(2..)
            .is_some_and(|hex| hex.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Seconds left until `expires_at`, within Twilio's accepted range.
fn validity_seconds(expires_at: Timestamp, now: Timestamp) -> i64 {
    let left_ms = expires_at.millis().saturating_sub(now.millis());
    (left_ms / 1000).clamp(VALIDITY_MIN, VALIDITY_MAX)
}

/// A request that got no answer (see [`http::transport`]).
fn transport(e: &reqwest::Error) -> ProviderError {
    http::transport("Twilio", e)
}

impl Provider for TwilioProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn send<'a>(
        &'a self,
        request: SendRequest<'a>,
    ) -> BoxFuture<'a, Result<Accepted, ProviderError>> {
        Box::pin(async move {
            let form = self.form(&request, Timestamp::now());
            let response = self
                .client
                .post(&self.messages_url)
                .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
                .form(&form)
                .send()
                .await
                .map_err(|e| transport(&e))?;
            match self.answer(response).await? {
                Ok(resource) => Ok(Accepted {
                    provider_message_id: resource.sid,
                }),
                // A 404 on a send: the account (or base URL) is wrong; retrying the same
                // request cannot help.
                Err(status) => Err(ProviderError::Permanent {
                    code: format!("http_{status}"),
                    message: "Twilio does not know this account's Messages resource (check providers.twilio.account_sid and base_url)".into(),
                }),
            }
        })
    }

    fn default_sender(&self) -> &str {
        &self.default_sender
    }

    fn sender_rate(&self, sender: &str) -> Option<NonZeroU32> {
        self.sender_rates
            .get(sender)
            .copied()
            .unwrap_or(self.sender_rate)
    }

    /// 20429 (HTTP 429): too many requests from this sender or account at once.
    fn throttles_sender(&self, error: &ProviderError) -> bool {
        matches!(error, ProviderError::Transient { code, .. } if code == "20429" || code == "http_429")
    }

    fn typical_delivery(&self) -> Option<Duration> {
        None
    }

    fn parse_webhook(&self, request: WebhookRequest<'_>) -> Result<WebhookEvents, WebhookError> {
        match request.kind {
            WebhookKind::Status => self.parse_status_callback(request),
            WebhookKind::Inbound => self.parse_inbound(request),
        }
    }

    fn lookup<'a>(&'a self, provider_message_id: &'a str) -> BoxFuture<'a, Lookup> {
        Box::pin(async move {
            // The id is ours from the database, but it goes into a path: only Twilio's
            // alphabet (SM… / MM…) is sent.
            if provider_message_id.is_empty()
                || !provider_message_id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric())
            {
                return Lookup::NotFound;
            }
            let url = format!("{}{provider_message_id}.json", self.message_url_prefix);
            let response = match self
                .client
                .get(url)
                .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => return Lookup::Failed(transport(&e)),
            };
            match self.answer(response).await {
                Ok(Ok(resource)) => match self.status_update(&resource) {
                    Some(update) => Lookup::Status(update),
                    None => Lookup::NoNews,
                },
                Ok(Err(_)) => Lookup::NotFound,
                Err(e) => Lookup::Failed(e),
            }
        })
    }

    fn find_sent<'a>(
        &'a self,
        request: SendRequest<'a>,
        attempt_started: Timestamp,
    ) -> BoxFuture<'a, InDoubt> {
        Box::pin(async move { self.search(&request, attempt_started).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_is_the_seconds_left_within_twilios_range() {
        let now = Timestamp::from_millis(1_000_000);
        assert_eq!(
            validity_seconds(now.plus(Duration::from_secs(600)), now),
            600
        );
        assert_eq!(
            validity_seconds(now.plus(Duration::from_secs(99_999)), now),
            36_000
        );
        assert_eq!(validity_seconds(now, now), 1);
        assert_eq!(validity_seconds(Timestamp::from_millis(0), now), 1);
    }

    #[test]
    fn a_messaging_service_sid_is_told_from_a_sender() {
        assert!(is_messaging_service("MG0123456789abcdef0123456789abcdef"));
        assert!(!is_messaging_service("+15017122661"));
        assert!(!is_messaging_service("HERALD"));
        assert!(!is_messaging_service("MGxx23456789abcdef0123456789abcdef"));
    }

    fn listed(json: serde_json::Value) -> MessageResource {
        let mut resource = serde_json::json!({
            "sid": "SM1", "status": "delivered", "error_code": null, "error_message": null,
            "to": "+14155550100", "from": "+15017122661", "messaging_service_sid": null,
            "body": "Hello", "direction": "outbound-api",
            "date_created": "Sat, 05 Dec 2026 10:00:30 +0000",
        });
        if let (Some(base), Some(changes)) = (resource.as_object_mut(), json.as_object()) {
            for (k, v) in changes {
                base.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(resource).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_listed_message_matches_only_the_send_it_can_be() {
        let id = crate::domain::MessageId::from_stored("msg_1".into());
        let request = SendRequest {
            message_id: &id,
            channel: crate::domain::Channel::Sms,
            to: "+14155550100",
            from: "+15017122661",
            body: "Hello",
            media_url: None,
            template: None,
            expires_at: Timestamp::from_millis(i64::MAX),
        };
        // 10:00:00 UTC on 2026-12-05.
        let not_before = Timestamp::from_millis(1_796_464_800_000);
        let created = Timestamp::from_millis(1_796_464_830_000);
        assert_eq!(
            matching(&listed(serde_json::json!({})), &request, not_before),
            Some(created)
        );
        let misses = [
            ("another body", serde_json::json!({"body": "Hello!"})),
            (
                "another recipient",
                serde_json::json!({"to": "+14155550101"}),
            ),
            (
                "another sender",
                serde_json::json!({"from": "+15005550006"}),
            ),
            (
                "created before the attempt",
                serde_json::json!({"date_created": "Sat, 05 Dec 2026 09:59:59 +0000"}),
            ),
            (
                "no creation time",
                serde_json::json!({"date_created": null}),
            ),
            (
                "an unreadable time",
                serde_json::json!({"date_created": "yesterday"}),
            ),
            ("inbound", serde_json::json!({"direction": "inbound"})),
        ];
        for (why, change) in misses {
            assert_eq!(
                matching(&listed(change), &request, not_before),
                None,
                "{why}"
            );
        }
        // Sent through a Messaging Service: its sid is the sender, whatever number it used.
        let service = "MG0123456789abcdef0123456789abcdef";
        let through_service = SendRequest {
            from: service,
            ..request
        };
        assert!(
            matching(
                &listed(serde_json::json!({"messaging_service_sid": service})),
                &through_service,
                not_before
            )
            .is_some()
        );
        assert!(matching(&listed(serde_json::json!({})), &through_service, not_before).is_none());
    }
}
