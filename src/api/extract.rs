//! Extractors whose rejections are [`ApiError`]s: a JSON body (content type, size, syntax),
//! typed fields with the failing field named, the authenticated account, and the
//! `Idempotency-Key` header.

use super::{ApiError, AppState};
use crate::idempotency::IdempotencyKey;
use crate::store::AuthenticatedKey;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

const SEND_JSON: &str = "send a JSON body with `Content-Type: application/json`";

/// A JSON object body, read up to `server.max_body_bytes`.
pub(crate) struct JsonBody(pub serde_json::Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let json = is_json(&req);
        match MaybeJsonBody::from_request(req, state).await? {
            MaybeJsonBody(Some(value)) => Ok(JsonBody(value)),
            MaybeJsonBody(None) if json => Err(ApiError::InvalidJson("the body is empty".into())),
            MaybeJsonBody(None) => Err(ApiError::UnsupportedMediaType(SEND_JSON)),
        }
    }
}

/// A JSON object body, or no body at all (for endpoints whose body is optional).
pub(crate) struct MaybeJsonBody(pub Option<serde_json::Value>);

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

impl FromRequest<AppState> for MaybeJsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let json = is_json(&req);
        if !json && req.headers().contains_key(header::CONTENT_TYPE) {
            return Err(ApiError::UnsupportedMediaType(SEND_JSON));
        }
        let max = state.max_body_bytes();
        let bytes = axum::body::to_bytes(req.into_body(), max)
            .await
            .map_err(|e| {
                if std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                {
                    ApiError::PayloadTooLarge { max }
                } else {
                    ApiError::InvalidJson("the request body could not be read".into())
                }
            })?;
        if bytes.is_empty() {
            return Ok(MaybeJsonBody(None));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType(SEND_JSON));
        }
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::InvalidJson(format!("the body is not valid JSON: {e}")))?;
        if !value.is_object() {
            return Err(ApiError::InvalidJson(
                "the body must be a JSON object".into(),
            ));
        }
        Ok(MaybeJsonBody(Some(value)))
    }
}

/// Deserializes a request object into `T`, naming the field at fault: a missing required
/// field is `missing_field`, a wrong type is `invalid_field`. `prefix` locates the object
/// inside a larger body (`messages[3].`).
pub(crate) fn fields<T: DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        let at = |field: &str| {
            let mut full = prefix.to_owned();
            if path != "." && !path.is_empty() {
                full.push_str(&path);
                if !field.is_empty() {
                    full.push('.');
                }
            }
            full.push_str(field);
            full
        };
        match message.strip_prefix("missing field `") {
            Some(rest) => ApiError::MissingField {
                field: at(rest.split('`').next().unwrap_or_default()),
            },
            None => {
                let field = at("");
                ApiError::InvalidField {
                    reason: format!("`{field}` is invalid: {message}"),
                    field,
                }
            }
        }
    })
}

/// The account a valid `Authorization: Bearer <key>` belongs to; also enforces the per-key
/// request rate.
pub(crate) struct Auth(pub AuthenticatedKey);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, key) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            })
            .filter(|key| !key.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        let found = state
            .authenticate(key)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        state
            .check_rate(&found)
            .await
            .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
        Ok(Auth(found))
    }
}

/// One path parameter as text. A segment that is not valid percent-encoded UTF-8
/// (`/message/%FF%FE/status/`) is `400 invalid_field` in the one error shape, not axum's
/// plain-text rejection.
pub(crate) struct PathParam(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<String>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(PathParam(value)),
            Err(e) => Err(ApiError::invalid(
                "path",
                format!("the path is not valid: {}", e.body_text()),
            )),
        }
    }
}

/// The optional `Idempotency-Key` header, validated.
pub(crate) struct Idempotency(pub Option<IdempotencyKey>);

impl<S: Sync> FromRequestParts<S> for Idempotency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.headers.get("idempotency-key") {
            None => Ok(Idempotency(None)),
            Some(raw) => IdempotencyKey::parse(raw.as_bytes())
                .map(|key| Idempotency(Some(key)))
                .map_err(|e| ApiError::invalid("Idempotency-Key", e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        phone_number: String,
        nested: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn missing_and_invalid_fields_are_named() {
        let missing = fields::<Item>(serde_json::json!({}), "messages[2].");
        assert!(
            matches!(&missing, Err(ApiError::MissingField { field }) if field == "messages[2].phone_number"),
            "{missing:?}"
        );
        let invalid = fields::<Item>(serde_json::json!({"phone_number": 5}), "");
        assert!(
            matches!(&invalid, Err(ApiError::InvalidField { field, .. }) if field == "phone_number"),
            "{invalid:?}"
        );
        let nested = fields::<Item>(
            serde_json::json!({"phone_number": "x", "nested": {"count": "many"}}),
            "",
        );
        assert!(
            matches!(&nested, Err(ApiError::InvalidField { field, .. }) if field == "nested.count"),
            "{nested:?}"
        );
    }
}
