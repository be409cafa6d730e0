//! `X-Twilio-Signature`: HMAC-SHA1, keyed with the auth token, over the full URL Twilio
//! called followed by every POST field as `name` + `value`, names sorted in byte order (a
//! repeated name contributes each of its values, in the order sent), base64.
//!
//! Twilio computes it over the URL as configured, which may or may not spell the default
//! port (`:443`, `:80`), and proxies disagree about keeping it; both forms are accepted.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// The signature Twilio sends for a POST of `params` to `url`.
pub fn sign(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    // Stable: values of a repeated name keep the order they were sent in.
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()) else {
        return String::new();
    };
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `signature` is Twilio's for `url` (with or without its default port) and
/// `params`. The comparison takes the same time wherever the strings differ.
pub fn verify(auth_token: &str, url: &str, params: &[(String, String)], signature: &str) -> bool {
    let mut matched = subtle::Choice::from(0);
    for candidate in url_forms(url) {
        let expected = sign(auth_token, &candidate, params);
        matched |= expected.as_bytes().ct_eq(signature.as_bytes());
    }
    bool::from(matched)
}

/// `url` as given, and with its default port added or removed.
fn url_forms(url: &str) -> Vec<String> {
    let mut forms = vec![url.to_owned()];
    for (scheme, port) in [("https://", ":443"), ("http://", ":80")] {
        let Some(rest) = url.strip_prefix(scheme) else {
            continue;
        };
        let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let other = match authority.strip_suffix(port) {
            Some(host) => format!("{scheme}{host}{tail}"),
            None if !authority.contains(':') || authority.ends_with(']') => {
                format!("{scheme}{authority}{port}{tail}")
            }
            None => continue,
        };
        forms.push(other);
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(caller: &str, from: &str) -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", caller),
            ("Digits", "1234"),
            ("From", from),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    /// The vectors Twilio publishes (FAKES.md), reproduced by its own `RequestValidator`.
    #[test]
    fn the_published_test_vectors_are_reproduced() {
        let a = params("+12349013030", "+12349013030");
        assert_eq!(sign("12345", URL, &a), "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        let b = params("+14158675310", "+14158675310");
        assert_eq!(sign("12345", URL, &b), "GvWf1cFY/Q7PnoempGyD5oXAezc=");
    }

    #[test]
    fn field_order_does_not_matter_but_every_field_does() {
        let mut a = params("+12349013030", "+12349013030");
        a.reverse();
        assert!(verify("12345", URL, &a, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        a.push(("Extra".into(), "x".into()));
        assert!(!verify("12345", URL, &a, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        let a = params("+12349013030", "+12349013030");
        assert!(!verify("12346", URL, &a, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="));
        assert!(!verify("12345", URL, &a, ""));
        assert!(!verify(
            "12345",
            "https://mycompany.com/myapp.php",
            &a,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
    }

    #[test]
    fn a_signature_with_or_without_the_default_port_is_accepted() {
        let a = params("+12349013030", "+12349013030");
        let with_port = sign(
            "12345",
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &a,
        );
        assert!(verify("12345", URL, &a, &with_port));
        let without = sign("12345", URL, &a);
        assert!(verify(
            "12345",
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            &a,
            &without
        ));
        // Another port is another URL.
        let other = sign(
            "12345",
            "https://mycompany.com:8443/myapp.php?foo=1&bar=2",
            &a,
        );
        assert!(!verify("12345", URL, &a, &other));
        assert_eq!(url_forms("http://h:80/p"), ["http://h:80/p", "http://h/p"]);
        assert_eq!(url_forms("http://h"), ["http://h", "http://h:80"]);
    }
}
