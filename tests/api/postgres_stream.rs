//! The live event stream (`GET /api/messaging/events`) on PostgreSQL, where event numbers are
//! not handed out in commit order: one API process streams what two worker processes write,
//! and a transaction holding a low event number commits after the workers' higher ones (made
//! certain here by holding one open). The stream must give that event too, every message's
//! whole history, each number once and in increasing order, across a reconnect with
//! `Last-Event-ID`.

use crate::crash::Herald;
use crate::events::{Frame, by_message, read_frames, seq, statuses};
use crate::helpers::{
    API_KEY, bulk_items, eventually, history_statuses, number, numbers_from, send_bulk_to, test_dir,
};
use crate::postgres::{TestDatabase, migrate, process_env};
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

async fn open_stream(
    client: &reqwest::Client,
    base: &str,
    last: Option<&str>,
) -> reqwest::Response {
    let mut request = client
        .get(format!("{base}/api/messaging/events"))
        .bearer_auth(API_KEY);
    if let Some(last) = last {
        request = request.header("Last-Event-ID", last);
    }
    let response = request.send().await.expect("answered");
    assert_eq!(response.status(), 200, "the stream opens on PostgreSQL");
    response
}

async fn view(client: &reqwest::Client, base: &str, id: &str) -> Value {
    client
        .get(format!("{base}/api/messaging/message/{id}/status/"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_postgres_gives_an_event_that_commits_after_higher_numbers_and_resumes_without_a_gap()
 {
    // Arrange: one API process with a stream open on it from the start.
    let db = TestDatabase::named("herald_stream").await;
    let dir = test_dir();
    migrate(dir.path(), &db);
    let pool = db.pool().await;
    let journal = |run: &str| dir.path().join(format!("{run}.log")).display().to_string();
    let api_journal = journal("api");
    let mut api = Herald::start_command(
        dir.path(),
        "api",
        &["serve", "--no-workers"],
        &process_env(&db, &api_journal),
    );
    let client = reqwest::Client::new();
    api.wait_healthy(&client).await;
    let mut stream = open_stream(&client, &api.base, None).await.bytes_stream();

    let mut ids = Vec::new();
    for chunk in bulk_items(&numbers_from(2000, 200), "normal", "streamed").chunks(100) {
        ids.extend(send_bulk_to(&client, &api.base, API_KEY, chunk).await);
    }
    let later =
        (Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let scheduled = send_bulk_to(
        &client,
        &api.base,
        API_KEY,
        &[json!({"phone_number": number("2999"), "message": "later", "scheduled_at": later})],
    )
    .await;
    let scheduled = scheduled.first().expect("its id").clone();
    // Another writer's transaction, slow to commit: its event's number is taken now, and it
    // stays open while the workers' events take higher numbers and commit before it.
    let (slow, held) = crate::postgres::cancel_in_open_transaction(&pool, &scheduled).await;

    // Act: two worker processes deliver the 200 while the slow transaction stays open; the
    // messages reach their last status (the mock reads them about a second after delivery,
    // so the API process's feed has polled the log many times by then).
    let workers: Vec<Herald> = (0..2)
        .map(|i| {
            let run = format!("worker-{i}");
            let journal = journal(&run);
            Herald::start_command(dir.path(), &run, &["worker"], &process_env(&db, &journal))
        })
        .collect();
    let mut histories = HashMap::new();
    for id in &ids {
        let final_view = eventually(
            "each message to reach its last status",
            Duration::from_secs(60),
            || async {
                let v = view(&client, &api.base, id).await;
                let last = v["status"].as_str().unwrap_or("").to_owned();
                ["read", "delivered", "undelivered", "failed"]
                    .contains(&last.as_str())
                    .then_some(v)
            },
        )
        .await;
        histories.insert(id.clone(), history_statuses(&final_view));
    }
    let written_after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM event WHERE event_seq > $1")
        .bind(held)
        .fetch_one(&pool)
        .await
        .expect("counted");
    assert!(
        written_after > 0,
        "the workers' events took numbers after the held one and committed first"
    );
    slow.commit().await.expect("the slow transaction commits");

    // Part of the story on the first connection, then the client goes away and comes back
    // with the last id it saw.
    let mut buffer = String::new();
    let mut frames: Vec<Frame> = Vec::new();
    read_frames(&mut stream, &mut buffer, &mut frames, |f| f.len() >= 300).await;
    drop(stream);
    let last = frames.last().expect("frames").0.clone();
    let expected = histories.values().map(Vec::len).sum::<usize>() + 2;
    let mut resumed = open_stream(&client, &api.base, Some(&last))
        .await
        .bytes_stream();
    let mut buffer = String::new();
    read_frames(&mut resumed, &mut buffer, &mut frames, |f| {
        f.len() >= expected
    })
    .await;

    // Assert
    let numbers: Vec<i64> = frames.iter().map(|(id, _, _)| seq(id)).collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "ids only grow, none twice"
    );
    assert!(
        numbers.contains(&held),
        "the event committed after higher numbers is in the stream (event {held})"
    );
    assert_eq!(frames.len(), expected, "every event, nothing more");
    let as_events: Vec<(String, Value)> = frames
        .iter()
        .map(|(_, _, d)| (String::new(), d.clone()))
        .collect();
    let grouped = by_message(&as_events);
    for id in &ids {
        assert_eq!(
            statuses(&grouped[id]),
            histories[id],
            "{id}: its whole history"
        );
    }
    assert_eq!(statuses(&grouped[&scheduled]), ["queued", "canceled"]);
    drop(workers);
    drop(api);
    db.drop_now().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_starts_while_a_transaction_runs_long_elsewhere_and_its_stream_catches_up_after() {
    // Arrange: a session elsewhere holds a transaction open, so no horizon can settle.
    let db = TestDatabase::named("herald_stream").await;
    let dir = test_dir();
    migrate(dir.path(), &db);
    let pool = db.pool().await;
    let mut long = pool.begin().await.expect("a transaction");
    let _: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut *long)
        .await
        .expect("it holds a transaction id");

    // Act: the API process starts (its event feed cannot know the log's end yet) and takes a
    // send; then the long transaction ends.
    let journal = dir.path().join("api.log").display().to_string();
    let mut api = Herald::start_command(
        dir.path(),
        "api",
        &["serve", "--no-workers"],
        &process_env(&db, &journal),
    );
    let client = reqwest::Client::new();
    api.wait_healthy(&client).await;
    let id = send_bulk_to(
        &client,
        &api.base,
        API_KEY,
        &[json!({"phone_number": number("2500"), "message": "while it waits"})],
    )
    .await;
    long.commit().await.expect("the long transaction ends");

    // Assert: a stream from the start of the log gives the send's event.
    let mut stream = open_stream(&client, &api.base, Some("evt_0"))
        .await
        .bytes_stream();
    let mut frames: Vec<Frame> = Vec::new();
    read_frames(&mut stream, &mut String::new(), &mut frames, |f| {
        !f.is_empty()
    })
    .await;
    assert_eq!(frames[0].2["message_id"], json!(id[0]));
    assert_eq!(frames[0].2["status"], "queued");
    drop(api);
    db.drop_now().await;
}
