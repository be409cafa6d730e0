//! Status callbacks in Twilio's format, for messages sent through the Twilio-compatible API
//! with a `StatusCallback`: form-encoded fields as Twilio posts them, signed
//! (`X-Twilio-Signature`) with the auth token the application already holds, which for
//! Herald is its API key. Herald keeps only a hash of each key, so such a message carries
//! the key sealed with `credentials.key`, bound to the message id (a sealed value copied to
//! another message does not open). No `credentials.key`, no Twilio-format callbacks.

use crate::domain::{Channel, MessageStatus};
use crate::sealing::{SealError, SealingKey};
use crate::store::events::EventRecord;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Herald's status as Twilio names it (an expired message is one Twilio would call failed).
pub fn status_name(status: MessageStatus) -> &'static str {
    match status {
        MessageStatus::Expired => "failed",
        other => other.as_str(),
    }
}

/// Twilio's error codes are numbers: a provider's own code passes through, Herald's names
/// map to the nearest Twilio code.
pub fn error_code(code: &str) -> u32 {
    code.parse().unwrap_or(match code {
        "recipient_opted_out" => 21610,
        "unreachable" => 30003,
        "undelivered" => 30005,
        "expired" => 30001,
        _ => 30008,
    })
}

fn context(message_id: &str) -> Vec<u8> {
    format!("herald twilio callback signer\0{message_id}").into_bytes()
}

/// The API key sealed for `message_id`, as stored: `<credentials key id>.<base64>`.
pub fn seal_signer(key: &SealingKey, api_key: &str, message_id: &str) -> String {
    let sealed = key.seal(api_key.as_bytes(), &context(message_id));
    format!("{}.{}", key.id(), STANDARD.encode(sealed))
}

/// The API key [`seal_signer`] sealed for `message_id`.
///
/// # Errors
/// Sealed under another `credentials.key`, or altered, or moved to another message.
pub fn open_signer(key: &SealingKey, stored: &str, message_id: &str) -> Result<String, SealError> {
    let (key_id, sealed) = stored.split_once('.').ok_or(SealError::Tampered)?;
    let sealed = STANDARD.decode(sealed).map_err(|_| SealError::Tampered)?;
    let plain = key.open(&sealed, key_id, &context(message_id))?;
    String::from_utf8(plain).map_err(|_| SealError::Tampered)
}

/// The fields Twilio posts to a message's `StatusCallback` for a status event. `from` is
/// the sender the message went out from, when known.
pub fn callback_fields(event: &EventRecord, from: Option<&str>) -> Vec<(String, String)> {
    let whatsapp = event.channel.as_deref() == Some(Channel::Whatsapp.as_str());
    let address = |n: &str| {
        if whatsapp {
            format!("whatsapp:{n}")
        } else {
            n.to_owned()
        }
    };
    let status = MessageStatus::parse(&event.status).map_or("failed", status_name);
    let mut fields = vec![
        ("AccountSid".to_owned(), event.account_id.to_string()),
        ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
        ("MessageSid".to_owned(), event.message_id.clone()),
        ("SmsSid".to_owned(), event.message_id.clone()),
        ("MessageStatus".to_owned(), status.to_owned()),
        ("SmsStatus".to_owned(), status.to_owned()),
    ];
    if let Some(to) = event.phone_number.as_deref() {
        fields.push(("To".to_owned(), address(to)));
    }
    if let Some(from) = from {
        fields.push(("From".to_owned(), address(from)));
    }
    if let Some(code) = event.error_code.as_deref() {
        fields.push(("ErrorCode".to_owned(), error_code(code).to_string()));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn key(byte: u8) -> SealingKey {
        let encoded = STANDARD.encode([byte; 32]);
        SealingKey::from_config(&SecretString::from(encoded))
            .ok()
            .flatten()
            .expect("a valid key")
    }

    #[test]
    fn a_sealed_signer_opens_only_for_its_message_and_key() {
        let stored = seal_signer(&key(1), "hk_live_secret", "msg_a");
        assert!(!stored.contains("hk_live_secret"));
        assert_eq!(
            open_signer(&key(1), &stored, "msg_a").as_deref(),
            Ok("hk_live_secret")
        );
        assert_eq!(
            open_signer(&key(1), &stored, "msg_b"),
            Err(SealError::Tampered)
        );
        assert!(matches!(
            open_signer(&key(2), &stored, "msg_a"),
            Err(SealError::OtherKey(_))
        ));
    }

    #[test]
    fn herald_codes_become_the_nearest_twilio_codes() {
        assert_eq!(error_code("30006"), 30006);
        assert_eq!(error_code("recipient_opted_out"), 21610);
        assert_eq!(error_code("something_else"), 30008);
        assert_eq!(status_name(MessageStatus::Expired), "failed");
        assert_eq!(status_name(MessageStatus::Delivered), "delivered");
    }
}
