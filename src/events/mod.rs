//! Events as customers see them (SPEC §7): the JSON of each, how it is signed, and the two
//! ways it leaves Herald: posted to webhooks (`workers/webhooks.rs`) and streamed ([`feed`]).
//!
//! The store writes events in the transaction of the change they record; this module only
//! reads them, so what a customer is told always happened.

pub mod feed;
pub mod target;
pub mod twilio_format;

use crate::store::events::{EventKind, EventRecord};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// Prefix of an event's id; the number after it is the event's place in commit order.
const EVENT_ID_PREFIX: &str = "evt_";

/// An event's public id.
pub fn event_id(seq: i64) -> String {
    format!("{EVENT_ID_PREFIX}{seq}")
}

/// The sequence number in an event id (`Last-Event-ID`); the bare number is accepted too.
pub fn parse_event_id(id: &str) -> Option<i64> {
    let id = id.trim();
    id.strip_prefix(EVENT_ID_PREFIX)
        .unwrap_or(id)
        .parse()
        .ok()
        .filter(|n: &i64| *n >= 0)
}

/// A new webhook signing secret: 192 random bits.
pub fn new_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("whsec_{}", hex::encode(bytes))
}

/// `X-Herald-Signature`: `sha256=` and the hex HMAC-SHA256 of `"<timestamp>.<body>"`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The event's JSON, the same in a webhook's body and in the stream's `data:`.
pub fn payload(event: &EventRecord) -> Value {
    let mut body = json!({
        "event": event.kind.as_str(),
        "event_id": event_id(event.seq),
        "message_id": event.message_id,
        "status": event.status,
        "previous_status": event.previous_status,
        "error_code": event.error_code,
        "error_message": event.error_message,
        "at": event.at.to_rfc3339(),
        "channel": event.channel,
        "campaign_id": event.campaign_id,
    });
    let Some(fields) = body.as_object_mut() else {
        return body;
    };
    match (&event.kind, &event.inbound) {
        (EventKind::Inbound, Some(inbound)) => {
            fields.insert("from".into(), json!(event.phone_number));
            fields.insert("to".into(), json!(inbound.to));
            fields.insert("body".into(), json!(inbound.body));
            fields.insert("media_urls".into(), json!(inbound.media_urls));
            fields.insert("thread_id".into(), json!(inbound.thread_id));
            fields.insert("keyword".into(), json!(inbound.keyword));
            fields.insert("in_reply_to".into(), json!(inbound.in_reply_to));
        }
        _ => {
            fields.insert("phone_number".into(), json!(event.phone_number));
            let metadata = event
                .metadata
                .as_deref()
                .and_then(|m| serde_json::from_str::<Value>(m).ok());
            fields.insert("metadata".into(), metadata.unwrap_or(Value::Null));
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip_and_refuse_what_is_not_one() {
        assert_eq!(parse_event_id(&event_id(42)), Some(42));
        assert_eq!(parse_event_id("17"), Some(17));
        assert_eq!(parse_event_id("evt_x"), None);
        assert_eq!(parse_event_id("evt_-3"), None);
    }

    #[test]
    fn the_signature_is_the_hmac_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature("whsec_test", 1_700_000_000, br#"{"a":1}"#),
            "sha256=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }

    #[test]
    fn secrets_are_fresh() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), "whsec_".len() + 48);
    }
}
