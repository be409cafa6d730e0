//! Herald's integration tests: one binary, each test with its own app, database and port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod helpers;

mod auth;
mod bad_input;
mod balance;
mod campaigns;
mod compat;
mod contract;
mod crash;
mod dashboard;
mod docs;
mod events;
mod failover;
mod faults;
mod idempotency;
mod in_doubt;
mod inbox;
mod lifecycle;
mod mock_rules;
mod overview;
mod own_providers;
mod postgres;
mod postgres_inbox;
mod postgres_overview;
mod postgres_parity;
mod postgres_stream;
mod priority;
mod prism;
mod process;
mod rate_limit;
mod scheduling;
mod schema_parity;
mod search;
mod service;
mod shared_limits;
mod storage_faults;
mod twilio;
mod twilio_crash;
mod twilio_library;
mod twilio_prism;
mod twilio_stub;
mod webhook_receiver;
mod whatsapp;
mod whatsapp_prism;
mod whatsapp_stub;
