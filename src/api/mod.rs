//! The HTTP API (SPEC §1): routes, shared state, and the layers every request passes
//! (body limit, panic guard, latency metrics).

mod account;
mod bulk;
mod compat_odoo;
mod error;
mod extract;
mod health;
mod messages;
mod openapi;
mod phone;
mod send;

pub use error::ApiError;

use crate::billing::Pricing;
use crate::config::Settings;
use crate::domain::{AccountId, Region};
use crate::metrics::Metrics;
use crate::ratelimit::ApiLimits;
use crate::store::{AuthenticatedKey, Store};
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a key that authenticated once is trusted without asking the database again.
const AUTH_CACHE_TTL: Duration = Duration::from_secs(60);
const AUTH_CACHE_MAX: usize = 10_000;

/// What every handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

struct Shared {
    store: Store,
    settings: Settings,
    metrics: Metrics,
    pricing: Pricing,
    api_limits: ApiLimits,
    auth_cache: Mutex<HashMap<[u8; 32], (AuthenticatedKey, Instant)>>,
    typical_delivery: Option<Duration>,
}

impl AppState {
    pub fn new(
        store: Store,
        settings: Settings,
        metrics: Metrics,
        typical_delivery: Option<Duration>,
    ) -> Self {
        Self {
            inner: Arc::new(Shared {
                pricing: Pricing::from_settings(&settings.pricing),
                api_limits: ApiLimits::new(
                    settings.limits.api_requests_per_second,
                    settings.limits.api_burst,
                ),
                store,
                settings,
                metrics,
                auth_cache: Mutex::new(HashMap::new()),
                typical_delivery,
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn pricing(&self) -> &Pricing {
        &self.inner.pricing
    }

    pub fn typical_delivery(&self) -> Option<Duration> {
        self.inner.typical_delivery
    }

    pub fn max_body_bytes(&self) -> usize {
        self.inner.settings.server.max_body_bytes
    }

    /// The region national-format numbers of this account are read in.
    pub fn region_of(&self, _account: &AccountId) -> Region {
        self.inner.settings.messaging.default_region
    }

    async fn authenticate(&self, key: &str) -> Result<Option<AuthenticatedKey>, ApiError> {
        let hash = crate::auth::hash_key(key);
        if let Ok(cache) = self.inner.auth_cache.lock()
            && let Some((found, at)) = cache.get(&hash)
            && at.elapsed() < AUTH_CACHE_TTL
        {
            return Ok(Some(found.clone()));
        }
        let found = self.inner.store.authenticate(hash).await?;
        if let (Some(found), Ok(mut cache)) = (&found, self.inner.auth_cache.lock()) {
            if cache.len() >= AUTH_CACHE_MAX {
                cache.clear();
            }
            cache.insert(hash, (found.clone(), Instant::now()));
        }
        Ok(found)
    }

    fn check_rate(&self, key: &AuthenticatedKey) -> Result<(), Duration> {
        self.inner.api_limits.check(key.api_key_id.as_str())
    }

    /// Trims per-key limiter state; called from a timer.
    pub fn forget_idle(&self) {
        self.inner.api_limits.forget_idle();
    }
}

/// Every route, with its layers.
pub fn router(state: AppState) -> Router {
    let messaging = Router::new()
        .route("/send-message/", post(messages::send_message))
        .route("/send-message", post(messages::send_message))
        .route("/send-bulk/", post(bulk::send_bulk))
        .route("/send-bulk", post(bulk::send_bulk))
        .route("/validate-phone/", post(phone::validate_phone))
        .route("/validate-phone", post(phone::validate_phone))
        .route(
            "/message/{message_id}/status/",
            get(messages::message_status),
        )
        .route(
            "/message/{message_id}/status",
            get(messages::message_status),
        )
        .route("/account/balance/", get(account::balance))
        .route("/account/balance", get(account::balance))
        .route("/sms/send", post(compat_odoo::sms_send))
        .route("/sms/status/{message_id}", post(compat_odoo::sms_status));

    Router::new()
        .nest("/api/messaging", messaging)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("endpoint")
}

async fn method_not_allowed() -> Response {
    let mut response = ApiError::NotFound("endpoint with this method").into_response();
    *response.status_mut() = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    response
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Unexpected(anyhow::anyhow!("a request handler panicked")).into_response()
}

/// Records each request's latency under its route template (not the raw path, which would
/// make a metric per message id).
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics().observe_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
