//! Herald: a self-hosted bulk SMS and WhatsApp dispatch engine.
//!
//! # Layout
//! - [`api`]: the HTTP API (axum): routes, the one error shape, extractors, OpenAPI.
//! - [`domain`]: the types requests become (E164, MessageStatus, Money, …); no I/O.
//! - [`store`]: the database (sqlx; SQLite so far), written through one group-committing
//!   writer per process. The message table is also the delivery queue.
//! - [`workers`] (in `workers/` at the top of the repository): claiming, delivering,
//!   receipts, recovery; apalis runs the deliveries.
//! - [`providers`]: the provider trait, the mock provider, Twilio and the WhatsApp Cloud API.
//! - [`campaign`]: turning a campaign's list into rendered, priced recipients;
//!   [`templates`]: Handlebars, strict, unescaped.
//! - [`billing`], [`ratelimit`], [`idempotency`], [`auth`], [`metrics`]: one concern each.
//! - [`app`], [`cli`], [`config`], [`shutdown`], [`telemetry`]: wiring.
//!
//! One message's way: `api::messages` validates and prices it → `store` commits it with
//! its balance reservation (202) → `workers::queue` claims it (`sending`) →
//! `workers::deliver` rate-limits and hands it to a provider → `store` records `sent` and
//! settles the cost → the provider's receipts move it to `delivered` and `read`.

pub mod api;
pub mod app;
pub mod auth;
pub mod billing;
pub mod campaign;
pub mod cli;
pub mod config;
pub mod domain;
pub mod events;
pub mod idempotency;
pub mod inbound;
pub mod metrics;
pub mod providers;
pub mod ratelimit;
pub mod sealing;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod templates;

// The worker side lives in the top-level `workers/` folder (the layout asks for it) but is
// part of this crate: `herald serve` runs API and workers in one process, and the workers
// need `store`, `domain` and `providers`. A separate crate would depend on this one while
// this one starts it: a cycle.
#[path = "../workers/mod.rs"]
pub mod workers;
