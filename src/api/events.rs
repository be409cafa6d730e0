//! `GET /api/messaging/events`: the account's events as Server-Sent Events, as they commit
//! (SPEC §7). Each event's SSE `id` is its `event_id`, `event:` its type, `data:` the same
//! JSON a webhook gets. `Last-Event-ID` resumes right after that event, from the log.

use super::extract::Auth;
use super::{ApiError, AppState};
use crate::domain::AccountId;
use crate::events::{self, feed};
use crate::store::events::{EventKind, EventRecord};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use std::convert::Infallible;
use tokio::sync::{broadcast, mpsc};

#[derive(Debug, Deserialize)]
pub(crate) struct StreamQuery {
    /// Comma-separated event types; all when absent.
    types: Option<String>,
    campaign_id: Option<String>,
    /// For clients that cannot set the header on their first connection.
    last_event_id: Option<String>,
}

/// What one stream shows.
struct Filter {
    account_id: AccountId,
    status: bool,
    inbound: bool,
    campaign_id: Option<String>,
}

impl Filter {
    fn shows(&self, e: &EventRecord) -> bool {
        e.account_id == self.account_id
            && match e.kind {
                EventKind::Status => self.status,
                EventKind::Inbound => self.inbound,
            }
            && self
                .campaign_id
                .as_ref()
                .is_none_or(|c| e.campaign_id.as_ref() == Some(c))
    }
}

/// Stream the account's events (`text/event-stream`). Resumes after `Last-Event-ID` (header,
/// or `last_event_id` in the query) without a gap; without it, starts with what commits next.
#[utoipa::path(get, path = "/api/messaging/events", tag = "events",
    params(("types" = Option<String>, Query, description = "comma-separated: message.status, message.inbound"),
        ("campaign_id" = Option<String>, Query, description = "only this campaign's events"),
        ("last_event_id" = Option<String>, Query, description = "resume after this event; EventSource sends the Last-Event-ID header itself on reconnecting")),
    responses((status = 200, content_type = "text/event-stream", description = "the events, as they commit"),
        (status = 400, description = "invalid_field: an unknown type, or a malformed event id")),
    security(("bearer" = [])))]
pub(crate) async fn stream_events(
    State(state): State<AppState>,
    Auth(key): Auth,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let mut filter = Filter {
        account_id: key.account_id.clone(),
        status: query.types.is_none(),
        inbound: query.types.is_none(),
        campaign_id: query.campaign_id,
    };
    for kind in query.types.iter().flat_map(|t| t.split(',')) {
        match EventKind::parse(kind.trim()) {
            Some(EventKind::Status) => filter.status = true,
            Some(EventKind::Inbound) => filter.inbound = true,
            None => {
                return Err(ApiError::invalid(
                    "types",
                    "must list message.status and/or message.inbound",
                ));
            }
        }
    }
    let resume = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("\u{0}").to_owned())
        .or(query.last_event_id);
    let resume = match resume {
        None => None,
        Some(raw) => Some(
            events::parse_event_id(&raw)
                .ok_or_else(|| ApiError::invalid("Last-Event-ID", "must be an event id"))?,
        ),
    };
    // Subscribe first, then read the log: what commits in between is in one or the other.
    let live = state.feed().subscribe();
    let after = match resume {
        Some(seq) => seq,
        None => state.store().last_event_seq().await?,
    };
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(forward(state, filter, after, live, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Sends the stream's events until the client goes away: from the log up to the present,
/// then from the live feed (back to the log whenever this stream falls behind it).
async fn forward(
    state: AppState,
    filter: Filter,
    mut after: i64,
    mut live: broadcast::Receiver<feed::Batch>,
    tx: mpsc::Sender<Event>,
) {
    loop {
        // From the log: everything of the account after `after`.
        loop {
            let page = match state
                .store()
                .events_after(after, Some(&filter.account_id), feed::PAGE)
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "an event stream could not read the log");
                    return;
                }
            };
            let full = page.len() == feed::PAGE;
            for event in &page {
                after = event.seq;
                if filter.shows(event) && tx.send(sse(event)).await.is_err() {
                    return;
                }
            }
            if !full {
                break;
            }
        }
        // Live, until it lags (then back to the log) or ends.
        loop {
            let received = tokio::select! {
                received = live.recv() => received,
                () = tx.closed() => return,
                () = state.feed().stopping().cancelled() => return,
            };
            match received {
                Ok(batch) => {
                    for (event, data) in batch.iter() {
                        if event.seq <= after {
                            continue;
                        }
                        after = event.seq;
                        if filter.shows(event) && tx.send(frame(event, data)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => break,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

fn sse(event: &EventRecord) -> Event {
    frame(event, &events::payload(event).to_string())
}

fn frame(event: &EventRecord, data: &str) -> Event {
    Event::default()
        .id(events::event_id(event.seq))
        .event(event.kind.as_str())
        .data(data)
}
