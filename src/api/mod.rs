//! The HTTP API (SPEC §1): routes, shared state, and the layers every request passes
//! (body limit, panic guard, latency metrics).

mod account;
mod bulk;
mod campaign_status;
mod campaign_upload;
mod campaigns;
mod compat_odoo;
mod dashboard;
mod docs;
mod error;
mod events;
mod extract;
mod health;
mod inbox;
mod messages;
mod openapi;
mod opt_outs;
mod overview;
mod phone;
mod providers;
mod search;
mod send;
mod stats;
mod templates;
mod twilio_compat;
mod webhook_endpoint;
mod webhooks;

pub use error::ApiError;

use crate::billing::Pricing;
use crate::config::{MOCK, Settings, WHATSAPP_CLOUD};
use crate::domain::{AccountId, CampaignId, Channel, Region, Timestamp};
use crate::events::feed::EventFeed;
use crate::inbound::Receiver;
use crate::metrics::Metrics;
use crate::providers::accounts::AccountProviders;
use crate::providers::twilio::{self, TwilioProvider};
use crate::providers::whatsapp::{self, WhatsappProvider};
use crate::providers::{Provider, mock};
use crate::ratelimit::ApiLimits;
use crate::ratelimit::shared::SharedLimits;
use crate::store::{AuthenticatedKey, Store};
use crate::templates::TemplateLibrary;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use std::collections::{HashMap, VecDeque};
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
    /// Redis, when limits are shared by every process (its state is shown in `/readyz`).
    shared_limits: Option<SharedLimits>,
    auth_cache: Mutex<HashMap<[u8; 32], (AuthenticatedKey, Instant)>>,
    /// Per channel, how long its primary provider usually takes from hand-over to the
    /// handset, for `estimated_delivery` (None: unknown, e.g. a real network's).
    typical_delivery: [Option<Duration>; 2],
    templates: TemplateLibrary,
    /// Recent (time, messages handed over) samples per campaign, behind `send_rate`.
    progress: Mutex<HashMap<CampaignId, VecDeque<(Instant, i64)>>>,
    /// Twilio's adapter, when credentials are configured: it checks and parses Twilio's
    /// webhooks. Built here too (not only in the workers) because `--no-workers` API
    /// processes take webhooks as well.
    twilio: Option<Arc<dyn Provider>>,
    /// The WhatsApp Cloud API adapter, when its app secret is configured: it answers the
    /// webhook verification and checks and parses Meta's webhook POSTs.
    whatsapp: Option<Arc<WhatsappProvider>>,
    /// Accounts' own providers: their credentials, and their webhooks' adapters.
    accounts: AccountProviders,
    /// Stores what handsets send, from every inbound path.
    receiver: Receiver,
    feed: EventFeed,
}

/// How far back the send rate looks.
const RATE_WINDOW: Duration = Duration::from_secs(10);
const RATE_CAMPAIGNS_MAX: usize = 1_000;

impl AppState {
    pub fn new(
        store: Store,
        settings: Settings,
        metrics: Metrics,
        templates: TemplateLibrary,
        accounts: AccountProviders,
        feed: EventFeed,
        shared_limits: Option<SharedLimits>,
    ) -> Self {
        // The mock's timing is known in advance; of the real networks only the Cloud API
        // says how long it usually takes (below), Twilio promises nothing.
        let mock_timing = |provider: &str| {
            (provider == MOCK).then(|| mock::typical_delivery(&settings.providers.mock))
        };
        let mut typical_delivery = [
            mock_timing(&settings.providers.sms),
            mock_timing(&settings.providers.whatsapp),
        ];
        let twilio = settings
            .providers
            .twilio
            .configured()
            .then(|| match TwilioProvider::from_settings(&settings) {
                Ok(p) => Some(Arc::new(p) as Arc<dyn Provider>),
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "Twilio webhooks are refused");
                    None
                }
            })
            .flatten();
        let whatsapp = settings
            .providers
            .whatsapp_cloud
            .webhooks_configured()
            .then(|| match WhatsappProvider::from_settings(&settings) {
                Ok(p) => Some(Arc::new(p)),
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "WhatsApp webhooks are refused");
                    None
                }
            })
            .flatten();
        if settings.providers.whatsapp == WHATSAPP_CLOUD {
            typical_delivery[1] = whatsapp.as_ref().and_then(|w| w.typical_delivery());
        }
        Self {
            inner: Arc::new(Shared {
                receiver: Receiver::new(store.clone(), &settings, metrics.clone()),
                feed,
                accounts,
                twilio,
                whatsapp,
                typical_delivery,
                pricing: Pricing::from_settings(&settings.pricing),
                api_limits: ApiLimits::new(
                    settings.limits.api_requests_per_second,
                    settings.limits.api_burst,
                    shared_limits.clone(),
                ),
                shared_limits,
                store,
                settings,
                metrics,
                auth_cache: Mutex::new(HashMap::new()),
                templates,
                progress: Mutex::new(HashMap::new()),
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

    pub fn typical_delivery(&self, channel: Channel) -> Option<Duration> {
        match channel {
            Channel::Sms => self.inner.typical_delivery[0],
            Channel::Whatsapp => self.inner.typical_delivery[1],
        }
    }

    pub fn max_body_bytes(&self) -> usize {
        self.inner.settings.server.max_body_bytes
    }

    /// The Twilio adapter, when Twilio credentials are configured.
    pub fn twilio_adapter(&self) -> Option<Arc<dyn Provider>> {
        self.inner.twilio.clone()
    }

    /// The WhatsApp Cloud API adapter as shared, when its app secret is configured.
    pub fn whatsapp_adapter(&self) -> Option<Arc<dyn Provider>> {
        self.inner.whatsapp.clone().map(|w| w as Arc<dyn Provider>)
    }

    /// The WhatsApp Cloud API adapter, when its app secret is configured.
    pub fn whatsapp(&self) -> Option<&WhatsappProvider> {
        self.inner.whatsapp.as_deref()
    }

    /// Stores inbound messages.
    pub fn receiver(&self) -> &Receiver {
        &self.inner.receiver
    }

    /// Accounts' own providers.
    pub fn feed(&self) -> &EventFeed {
        &self.inner.feed
    }

    pub fn accounts(&self) -> &AccountProviders {
        &self.inner.accounts
    }

    /// The named templates shipped in `templates/`.
    pub fn templates(&self) -> &TemplateLibrary {
        &self.inner.templates
    }

    /// A campaign's recent send rate (messages handed over per second), from the counts
    /// this process saw on earlier reads over the last few seconds; before there are two
    /// samples, the average since the campaign started.
    pub fn send_rate(
        &self,
        campaign: &CampaignId,
        handed_over: i64,
        started_at: Option<Timestamp>,
    ) -> f64 {
        let now = Instant::now();
        let average = || {
            started_at.map_or(0.0, |t| {
                let secs = (Timestamp::now().millis() - t.millis()) as f64 / 1000.0;
                if secs > 0.5 {
                    handed_over as f64 / secs
                } else {
                    0.0
                }
            })
        };
        let Ok(mut progress) = self.inner.progress.lock() else {
            return average();
        };
        if progress.len() >= RATE_CAMPAIGNS_MAX && !progress.contains_key(campaign) {
            progress.clear();
        }
        let samples = progress.entry(campaign.clone()).or_default();
        samples.push_back((now, handed_over));
        while samples.len() > 2
            && samples
                .get(1)
                .is_some_and(|(at, _)| now.duration_since(*at) >= RATE_WINDOW)
        {
            samples.pop_front();
        }
        match (samples.front(), samples.back()) {
            (Some((t0, n0)), Some((t1, n1)))
                if t1.duration_since(*t0) >= Duration::from_secs(1) =>
            {
                (n1 - n0).max(0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => average(),
        }
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

    async fn check_rate(&self, key: &AuthenticatedKey) -> Result<(), Duration> {
        self.inner.api_limits.check(key.api_key_id.as_str()).await
    }

    pub(crate) fn shared_limits(&self) -> Option<&SharedLimits> {
        self.inner.shared_limits.as_ref()
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
        .route(
            "/create-campaign-send/",
            post(campaigns::create_campaign_send),
        )
        .route(
            "/create-campaign-send",
            post(campaigns::create_campaign_send),
        )
        .route("/stats/", get(stats::stats))
        .route("/overview", get(overview::overview))
        .route("/stats", get(stats::stats))
        .route(
            "/campaigns",
            get(campaign_status::list_campaigns).post(campaigns::create_campaign),
        )
        .route("/campaigns/upload", post(campaign_upload::upload_campaign))
        .route(
            "/campaigns/{campaign_id}",
            get(campaign_status::get_campaign),
        )
        .route(
            "/campaigns/{campaign_id}/pause",
            post(campaign_status::pause_campaign),
        )
        .route(
            "/campaigns/{campaign_id}/resume",
            post(campaign_status::resume_campaign),
        )
        .route(
            "/campaigns/{campaign_id}/cancel",
            post(campaign_status::cancel_campaign),
        )
        .route(
            "/campaigns/{campaign_id}/rejections",
            get(campaign_status::campaign_rejections),
        )
        .route(
            "/templates",
            get(templates::list_templates).post(templates::create_template),
        )
        .route("/templates/preview", post(templates::preview_template))
        .route("/templates/{name}", get(templates::get_template))
        .route(
            "/opt-outs",
            get(opt_outs::list_opt_outs).post(opt_outs::add_opt_out),
        )
        .route("/opt-outs/{phone_number}", delete(opt_outs::remove_opt_out))
        .route("/providers", get(providers::list_providers))
        .route(
            "/providers/{provider}",
            get(providers::get_provider)
                .put(providers::put_provider)
                .delete(providers::delete_provider),
        )
        .route("/sms/send", post(compat_odoo::sms_send))
        .route("/sms/receive", post(inbox::sms_receive))
        .route("/sms/threads", post(inbox::sms_threads))
        .route("/message/read", post(inbox::message_read))
        .route("/unread/count", post(inbox::unread_count))
        .route(
            "/campaigns/{campaign_id}/replies",
            get(campaign_status::campaign_replies),
        )
        .route("/threads", get(inbox::list_threads))
        .route(
            "/keyword-replies",
            get(inbox::get_keyword_replies).put(inbox::put_keyword_replies),
        )
        .route("/threads/{thread_id}/messages", get(inbox::thread_messages))
        .route("/sms/status/{message_id}", post(compat_odoo::sms_status))
        .route(
            "/webhook",
            get(webhook_endpoint::get_webhook)
                .put(webhook_endpoint::put_webhook)
                .delete(webhook_endpoint::delete_webhook),
        )
        .route(
            "/webhook/rotate-secret",
            post(webhook_endpoint::rotate_secret),
        )
        .route(
            "/webhook/deliveries",
            get(webhook_endpoint::list_deliveries),
        )
        .route(
            "/webhook/deliveries/{delivery_id}",
            get(webhook_endpoint::get_delivery),
        )
        .route(
            "/webhook/deliveries/{delivery_id}/retry",
            post(webhook_endpoint::retry_delivery),
        )
        .route("/events", get(events::stream_events))
        .route("/messages", get(search::search_messages))
        .route(
            "/campaigns/{campaign_id}/export",
            get(search::export_campaign),
        );

    Router::new()
        .nest("/api/messaging", messaging)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .route(
            "/2010-04-01/Accounts/{account_sid}/Messages.json",
            get(twilio_compat::list_messages).post(twilio_compat::create_message),
        )
        .route(
            "/2010-04-01/Accounts/{account_sid}/Messages/{sid}",
            get(twilio_compat::fetch_message),
        )
        .route("/", get(dashboard::page))
        .route("/dashboard/{asset}", get(dashboard::asset))
        .route("/docs", get(docs::page))
        .route("/docs/", get(docs::page))
        .route("/docs/docs.js", get(docs::init_script))
        .route("/docs/swagger-ui-bundle.js", get(docs::bundle))
        .route("/docs/swagger-ui.css", get(docs::style))
        .route(twilio::STATUS_PATH, post(webhooks::twilio_status))
        .route(twilio::INBOUND_PATH, post(webhooks::twilio_inbound))
        .route(
            whatsapp::WEBHOOK_PATH,
            get(webhooks::whatsapp_verify).post(webhooks::whatsapp_events),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("endpoint")
}

/// axum's method router adds the `Allow` header to what this answers.
async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
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
