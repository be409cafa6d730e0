//! Crash safety through Twilio (issue 8): the real `herald serve`, sending SMS through the
//! recording Twilio stub, is killed with SIGKILL while hundreds of sends are at Twilio and
//! unanswered (the stub creates each message when the request arrives and answers 400 ms
//! later), so the kill leaves sends Twilio has and Herald never recorded. Started again on
//! the same database, Herald must find those by searching Twilio's message list instead of
//! sending them again: every message is handed to Twilio exactly once, reaches `delivered`
//! (by callback, by the search's answer, or by reconciliation), and none is counted as
//! re-sent in doubt.
//!
//! Twilio has no field for Herald's message id, so each message's text is unique and the
//! stub's record is matched to the message by its body.

use crate::crash::{Herald, open_db};
use crate::helpers::{
    API_KEY, eventually, metric, metrics_text, numbers_from, send_bulk_to, test_dir,
};
use crate::twilio_stub::{ACCOUNT_SID, AUTH_TOKEN, FROM, PUBLIC_URL, TwilioStub};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// 3,000 messages: ten distinct texts to each of 300 numbers, so a search must tell a
/// number's messages apart by their body.
const NUMBERS: u32 = 300;
const PER_NUMBER: u32 = 10;
/// Sends Twilio must have received before the kill.
const KILL_AFTER: usize = 700;
/// How long the stub holds each answer: at 512 deliveries in flight, about that many sends
/// are at Twilio and unanswered at any moment.
const ANSWER_DELAY: Duration = Duration::from_millis(400);
const DRAIN: Duration = Duration::from_secs(30);
/// After the restart every message is delivered within this.
const SETTLE: Duration = Duration::from_secs(40);

pub(crate) fn twilio_env(stub: &str) -> Vec<(&'static str, String)> {
    vec![
        ("HERALD__SERVER__PUBLIC_URL", PUBLIC_URL.to_owned()),
        ("HERALD__PROVIDERS__SMS", "twilio".to_owned()),
        ("HERALD__PROVIDERS__TWILIO__BASE_URL", stub.to_owned()),
        (
            "HERALD__PROVIDERS__TWILIO__ACCOUNT_SID",
            ACCOUNT_SID.to_owned(),
        ),
        (
            "HERALD__PROVIDERS__TWILIO__AUTH_TOKEN",
            AUTH_TOKEN.to_owned(),
        ),
        // Quoted: figment reads an unquoted `+15017122661` from the environment as a number.
        ("HERALD__PROVIDERS__TWILIO__FROM", format!("{FROM:?}")),
        (
            "HERALD__PROVIDERS__TWILIO__SENDER_PER_SECOND",
            "0".to_owned(),
        ),
        // Callbacks posted while Herald was down are lost: reconciliation finds them.
        (
            "HERALD__PROVIDERS__TWILIO__LOOKUP_AFTER_SECONDS",
            "1".to_owned(),
        ),
        ("HERALD__WORKERS__RECONCILE_EVERY_SECONDS", "1".to_owned()),
        ("HERALD__WORKERS__RECONCILE_BATCH", "1000".to_owned()),
    ]
}

async fn count(db: &sqlx::SqlitePool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(db)
        .await
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_sends_at_twilio_unanswered_finds_them_by_search_and_sends_each_once() {
    // Arrange: Herald on Twilio (no sender limit); Twilio answers every send 400 ms after it
    // created the message, delivers it at once and calls back.
    let started = Instant::now();
    let stub = TwilioStub::start().await;
    stub.delay_answers(ANSWER_DELAY);
    stub.deliver_at_once();
    let dir = test_dir();
    let client = reqwest::Client::new();
    let env = twilio_env(&stub.url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut herald = Herald::start_with(dir.path(), "1", &env);
    herald.wait_healthy(&client).await;
    stub.callbacks_to(&herald.base);
    let numbers = numbers_from(3000, NUMBERS);
    let items: Vec<Value> = (0..PER_NUMBER)
        .flat_map(|round| {
            numbers.iter().map(
                move |n| json!({"phone_number": n, "message": format!("in doubt #{round} to {n}")}),
            )
        })
        .collect();
    let requests = items.chunks(100).map(|chunk| {
        let (client, base) = (client.clone(), herald.base.clone());
        async move { send_bulk_to(&client, &base, API_KEY, chunk).await }
    });
    let accepted: Vec<String> = futures::future::join_all(requests).await.concat();
    let total = (NUMBERS * PER_NUMBER) as usize;
    assert_eq!(accepted.len(), total);

    // Act: kill -9 once Twilio has a few hundred, then start again on the same database.
    eventually("the first sends at Twilio", DRAIN, || async {
        (stub.send_count() >= KILL_AFTER).then_some(())
    })
    .await;
    herald.kill_9();
    let in_doubt_at_twilio = {
        let db = open_db(dir.path()).await;
        let not_final = count(
            &db,
            "SELECT COUNT(*) FROM message WHERE status <> 'delivered'",
        )
        .await;
        let unrecorded: HashSet<String> =
            sqlx::query_scalar::<_, String>("SELECT body FROM message WHERE status = 'sending'")
                .fetch_all(&db)
                .await
                .expect("bodies")
                .into_iter()
                .collect();
        let in_doubt = stub
            .sends()
            .iter()
            .filter(|s| s.field("Body").is_some_and(|b| unrecorded.contains(b)))
            .count();
        eprintln!(
            "killed after {:?}: Twilio has {} sends, {in_doubt} of them never recorded; {not_final} messages not delivered",
            started.elapsed(),
            stub.send_count()
        );
        assert!(not_final >= 2_000, "only {not_final} in flight at the kill");
        assert!(
            in_doubt > 0,
            "the kill must leave sends that Twilio has and Herald never recorded"
        );
        db.close().await;
        in_doubt
    };
    let mut herald = Herald::start_with(dir.path(), "2", &env);
    herald.wait_healthy(&client).await;
    stub.callbacks_to(&herald.base);
    let restarted = Instant::now();
    let db = open_db(dir.path()).await;
    eventually("every message delivered", SETTLE, || {
        let db = db.clone();
        async move {
            let left = count(
                &db,
                "SELECT COUNT(*) FROM message WHERE status <> 'delivered'",
            )
            .await;
            (left == 0).then_some(())
        }
    })
    .await;
    eprintln!("all delivered {:?} after the restart", restarted.elapsed());

    // Assert: Twilio got each text exactly once, and each message carries that send's sid.
    let mut posted: HashMap<String, usize> = HashMap::new();
    for send in stub.sends() {
        *posted
            .entry(send.field("Body").unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    let twice: Vec<(&String, &usize)> = posted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} texts sent to Twilio more than once: {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert_eq!(posted.len(), total, "every message was handed to Twilio");
    let sids: HashMap<String, String> = stub
        .messages()
        .into_iter()
        .map(|m| (m.body, m.sid))
        .collect();
    let recorded: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT body, provider_message_id FROM message")
            .fetch_all(&db)
            .await
            .expect("rows");
    let wrong: Vec<&(String, Option<String>)> = recorded
        .iter()
        .filter(|(body, sid)| sid.as_ref() != sids.get(body))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} messages do not carry the sid Twilio gave their text: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    let broken = count(
        &db,
        "SELECT COUNT(*) FROM (SELECT message_id FROM message_status_event GROUP BY message_id \
         HAVING COUNT(*) <> 4)",
    )
    .await;
    assert_eq!(
        broken, 0,
        "each history is queued, sending, sent, delivered"
    );
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM message WHERE in_doubt_since IS NOT NULL"
        )
        .await,
        0
    );
    let found = metric(
        &client,
        &herald.base,
        "herald_in_doubt_lookups_total{provider=\"twilio\",result=\"found\"}",
    )
    .await;
    let not_found = metric(
        &client,
        &herald.base,
        "herald_in_doubt_lookups_total{provider=\"twilio\",result=\"not_found\"}",
    )
    .await;
    eprintln!(
        "in doubt after the restart: {found} found at Twilio, {not_found} not found (sent then)"
    );
    assert!(
        found > 0.0,
        "in-doubt sends were resolved by searching Twilio"
    );
    // Every send Twilio had and Herald had not recorded was found (a request still in a
    // socket buffer at the kill may reach the stub after it was counted: at least).
    assert!(
        found >= in_doubt_at_twilio as f64,
        "{found} found at Twilio, {in_doubt_at_twilio} left there unrecorded by the kill"
    );
    let resent = metric(
        &client,
        &herald.base,
        "herald_resent_in_doubt_total{provider=\"twilio\"}",
    )
    .await;
    assert_eq!(resent, 0.0);
    let metrics = metrics_text(&client, &herald.base).await;
    assert!(
        metrics.contains("herald_resent_in_doubt_total{provider=\"twilio\"} 0"),
        "the series is shown at zero"
    );
    db.close().await;
    eprintln!("whole test {:?}", started.elapsed());
}
