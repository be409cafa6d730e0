//! What the HTTP providers (Twilio, WhatsApp Cloud) read the same way: `Retry-After`, and a
//! request that got no answer.

use super::{NETWORK_ERROR, ProviderError, TIMEOUT};
use crate::domain::Timestamp;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::time::Duration;

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at
        .timestamp_millis()
        .saturating_sub(Timestamp::now().millis());
    Some(Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
}

/// A request to `provider` that got no answer: always worth retrying (a timeout or a broken
/// connection may have delivered it: [`ProviderError::outcome_unknown`]). The message names the
/// kind of failure only: reqwest's own text carries the URL, which names the account (or the
/// phone number id), and this message is shown to API clients.
pub(crate) fn transport(provider: &str, e: &reqwest::Error) -> ProviderError {
    let (code, message) = if e.is_timeout() {
        (TIMEOUT, format!("{provider} did not answer in time"))
    } else if e.is_connect() {
        (
            "connection_failed",
            format!("{provider} could not be connected to"),
        )
    } else {
        (
            NETWORK_ERROR,
            format!("the connection to {provider} failed mid-request"),
        )
    };
    ProviderError::Transient {
        code: code.into(),
        message,
        retry_after: None,
    }
}

/// A provider's HTTP client builder: one keep-alive pool holding as many connections as
/// deliveries may be in flight, and `timeout` for connecting and for each whole request.
pub(crate) fn client_builder(concurrency: usize, timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(timeout)
        .connect_timeout(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, reqwest::header::HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            reqwest::header::HeaderValue::from_static("soon"),
        );
        assert_eq!(retry_after(&h), None);
    }
}
