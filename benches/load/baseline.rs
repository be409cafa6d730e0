//! The baseline: a bare axum server that parses the same JSON as Herald's send endpoints and
//! answers 202, storing nothing. Herald's figures are read as a ratio to it: how much of what
//! this machine's HTTP stack and JSON parsing could do is left after validation, pricing and
//! a durable commit.
//!
//! It runs as its own process (this bench binary started with `--baseline-server`), with the
//! same Tokio runtime as `herald` (`#[tokio::main]`: one worker thread per core), so both
//! compete with the load generator for the CPU in the same way.

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::net::SocketAddr;

/// The fields of Herald's `SendFields`, so parsing costs the same.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // parsed to be paid for, never read
struct SendFields {
    phone_number: String,
    message: String,
    campaign_id: Option<String>,
    priority: Option<String>,
    attachment_url: Option<String>,
    channel: Option<String>,
    sender_id: Option<String>,
    scheduled_at: Option<String>,
    status_callback: Option<String>,
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct SendBulk {
    messages: Vec<SendFields>,
    campaign_id: Option<String>,
}

/// Serves until killed. Prints nothing: the harness waits for `/healthz`.
pub(crate) fn serve(addr: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        axum::serve(listener, router()).await?;
        Ok(())
    })
}

fn router() -> Router {
    Router::new()
        .route("/api/messaging/send-message/", post(send_message))
        .route("/api/messaging/send-bulk/", post(send_bulk))
        .route("/healthz", get(|| async { "ok" }))
}

async fn send_message(body: Bytes) -> Response {
    match serde_json::from_slice::<SendFields>(&body) {
        Ok(_) => accepted(
            r#"{"success":true,"message_id":"msg_01JDZ8K5Q6V0X3M2N4P7R9S1T2","status":"queued"}"#
                .to_owned(),
        ),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

/// Answers with one result per item, as Herald does, so the response costs the same to write.
async fn send_bulk(body: Bytes) -> Response {
    let Ok(bulk) = serde_json::from_slice::<SendBulk>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let results: Vec<serde_json::Value> = (0..bulk.messages.len())
        .map(|index| {
            serde_json::json!({
                "index": index,
                "success": true,
                "message_id": "msg_01JDZ8K5Q6V0X3M2N4P7R9S1T2",
                "status": "queued",
            })
        })
        .collect();
    let answer = serde_json::json!({
        "success": true,
        "accepted": bulk.messages.len(),
        "rejected": 0,
        "results": results,
    });
    accepted(answer.to_string())
}

fn accepted(body: String) -> Response {
    (
        StatusCode::ACCEPTED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}
