//! Twilio's wire shapes, private to the adapter: the Message resource it answers with, its
//! error body, and what its statuses and error codes mean to Herald.

use crate::domain::MessageStatus;
use crate::providers::ProviderError;
use serde::Deserialize;
use std::time::Duration;

/// The parts of Twilio's Message resource Herald reads (unknown fields are ignored). The
/// fields after `error_message` matter to in-doubt lookups only, which match a listed
/// message to the send they look for.
#[derive(Debug, Deserialize)]
pub(super) struct MessageResource {
    pub(super) sid: String,
    pub(super) status: Option<String>,
    pub(super) error_code: Option<i64>,
    pub(super) error_message: Option<String>,
    #[serde(default)]
    pub(super) to: Option<String>,
    #[serde(default)]
    pub(super) from: Option<String>,
    #[serde(default)]
    pub(super) messaging_service_sid: Option<String>,
    #[serde(default)]
    pub(super) body: Option<String>,
    /// RFC 2822, second precision: `Thu, 30 Jul 2015 20:12:31 +0000`.
    #[serde(default)]
    pub(super) date_created: Option<String>,
    /// `outbound-api` for what the API sent; inbound messages are never ours.
    #[serde(default)]
    pub(super) direction: Option<String>,
}

/// One page of `GET …/Messages.json`: the messages, newest first, and the next page's path
/// (relative to the API's host), absent or null on the last page.
#[derive(Debug, Deserialize)]
pub(super) struct MessagePage {
    #[serde(default)]
    pub(super) messages: Vec<MessageResource>,
    #[serde(default)]
    pub(super) next_page_uri: Option<String>,
}

/// Twilio's error body: `{"code", "message", "more_info", "status"}`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorBody {
    pub(super) code: Option<i64>,
    pub(super) message: Option<String>,
}

/// The Herald status a Twilio status reports, for those that move a `sent` message on.
/// `queued`, `accepted`, `scheduled`, `sending` and `sent` say nothing we did not know when
/// Twilio answered the send; `canceled` only happens before sending.
pub(super) fn receipt_status(twilio: &str) -> Option<MessageStatus> {
    match twilio {
        "delivered" => Some(MessageStatus::Delivered),
        "undelivered" => Some(MessageStatus::Undelivered),
        "failed" => Some(MessageStatus::Failed),
        "read" => Some(MessageStatus::Read),
        _ => None,
    }
}

/// Herald's `error_code` for a Twilio error code: the code itself (Twilio documents each at
/// `https://www.twilio.com/docs/api/errors/<code>`), except where SPEC §1 names the case.
pub(super) fn error_code(code: i64) -> String {
    match code {
        21610 => crate::providers::RECIPIENT_OPTED_OUT.to_owned(),
        other => other.to_string(),
    }
}

/// Codes that will fail again however often they are retried: the number is invalid,
/// unsubscribed, not mobile, in a region the account may not send to, or the carrier
/// refuses it.
const PERMANENT: &[i64] = &[
    21211, // invalid `To`
    21408, // permission to send to this region not enabled
    21610, // the recipient replied STOP
    21614, // `To` is not a mobile number
    21604, // `To` missing
    21602, // `Body` missing
    21606, // `From` cannot send SMS
    21608, // trial account: `To` not verified
    21612, // `To` cannot be reached from `From`
    21617, // body too long
    30003, // unreachable handset
    30004, // message blocked
    30005, // unknown destination handset
    30006, // landline or unreachable carrier
    30007, // filtered by the carrier
    30008, // unknown error (Twilio advises against retrying)
];

/// Codes worth retrying even though Twilio answered with a 4xx.
const TRANSIENT: &[i64] = &[
    20429, // too many requests
    30001, // queue overflow
    20003, // authentication: credentials being rotated recover; bad ones exhaust the retries
    20500, // internal error
    20503, // service unavailable
];

/// Classifies an answer that was not a success. Known codes decide; otherwise the HTTP status
/// does: 429, 408 and 5xx are worth retrying, other 4xx are not (the same request fails the
/// same way).
pub(super) fn classify(
    status: u16,
    body: &ErrorBody,
    retry_after: Option<Duration>,
) -> ProviderError {
    let message = body
        .message
        .clone()
        .unwrap_or_else(|| format!("Twilio answered HTTP {status}"));
    let transient_status = status == 429 || status == 408 || status >= 500;
    match body.code {
        Some(code) if PERMANENT.contains(&code) => ProviderError::Permanent {
            code: error_code(code),
            message: format!("Twilio {code}: {message}"),
        },
        Some(code) if TRANSIENT.contains(&code) || transient_status => ProviderError::Transient {
            code: error_code(code),
            message: format!("Twilio {code}: {message}"),
            retry_after,
        },
        Some(code) => ProviderError::Permanent {
            code: error_code(code),
            message: format!("Twilio {code}: {message}"),
        },
        None if transient_status => ProviderError::Transient {
            code: format!("http_{status}"),
            message,
            retry_after,
        },
        None => ProviderError::Permanent {
            code: format!("http_{status}"),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: i64) -> ErrorBody {
        ErrorBody {
            code: Some(code),
            message: Some("m".into()),
        }
    }

    #[test]
    fn each_mapped_code_is_transient_or_permanent() {
        for code in [
            21211, 21408, 21610, 21614, 30003, 30004, 30005, 30006, 30007, 30008,
        ] {
            let e = classify(400, &body(code), None);
            assert!(
                matches!(e, ProviderError::Permanent { .. }),
                "{code}: {e:?}"
            );
        }
        for (status, code) in [(429, 20429), (400, 30001), (500, 20500), (503, 20503)] {
            let e = classify(status, &body(code), Some(Duration::from_secs(3)));
            assert!(
                matches!(&e, ProviderError::Transient { retry_after: Some(d), .. } if d.as_secs() == 3),
                "{code}: {e:?}"
            );
        }
        assert!(matches!(
            classify(502, &ErrorBody::default(), None),
            ProviderError::Transient { .. }
        ));
        assert!(matches!(
            classify(400, &ErrorBody::default(), None),
            ProviderError::Permanent { .. }
        ));
    }

    #[test]
    fn an_unsubscribed_recipient_fails_with_the_spec_code() {
        let e = classify(400, &body(21610), None);
        assert!(
            matches!(&e, ProviderError::Permanent { code, .. } if code == "recipient_opted_out"),
            "{e:?}"
        );
    }

    #[test]
    fn statuses_map_forward_only_where_they_say_something_new() {
        assert_eq!(receipt_status("delivered"), Some(MessageStatus::Delivered));
        assert_eq!(receipt_status("read"), Some(MessageStatus::Read));
        assert_eq!(
            receipt_status("undelivered"),
            Some(MessageStatus::Undelivered)
        );
        assert_eq!(receipt_status("failed"), Some(MessageStatus::Failed));
        for s in [
            "queued",
            "accepted",
            "sending",
            "sent",
            "scheduled",
            "canceled",
            "x",
        ] {
            assert_eq!(receipt_status(s), None, "{s}");
        }
    }
}
