//! Sends left in doubt (issue 8): a worker claimed a message and died before recording what
//! the provider answered. The next worker searches Twilio's message list (the recording
//! stub, `twilio_stub.rs`) before sending: a match is recorded as the send, with its status,
//! and nothing is sent; no match sends once; a failed search sends nothing and asks again.
//!
//! Each test leaves its messages in doubt the way a crash does: a worker that never
//! heartbeats (as a killed process cannot) claims them on an app without workers, then an app
//! with workers starts on the same database and its sweeper releases the dead claims.

use crate::helpers::{PATIENCE, TestApp, eventually, metric, number, spawn_in, test_dir};
use crate::twilio_stub::{FROM, Scripted, StubMessage, TwilioStub, twilio_toml};
use std::time::Duration;

/// `texts` (number, body) accepted and claimed by a worker that dies at once; returns the app
/// (no workers) and the message ids. Stop it and start one with workers to resolve them.
async fn claimed_by_a_dead_worker(
    stub: &TwilioStub,
    texts: &[(&str, &str)],
) -> (TestApp, Vec<String>) {
    let app = spawn_in(test_dir(), &twilio_toml(&stub.url, ""), false).await;
    let mut ids = Vec::new();
    for (to, body) in texts {
        ids.push(app.send_ok(to, body).await);
    }
    let claimed = app
        .store
        .claim_due("worker-killed", texts.len(), Duration::from_secs(600), true)
        .await
        .expect("the doomed worker claims");
    assert_eq!(claimed.len(), texts.len());
    (app, ids)
}

/// Restarts on the same database with workers: the dead claims are released in doubt.
async fn restart(app: TestApp, stub: &TwilioStub) -> TestApp {
    let dir = app.stop().await;
    spawn_in(dir, &twilio_toml(&stub.url, ""), true).await
}

fn twilio_series(name: &str, result: &str) -> String {
    format!("herald_{name}_total{{provider=\"twilio\",result=\"{result}\"}}")
}

const RESENT: &str = "herald_resent_in_doubt_total{provider=\"twilio\"}";

async fn in_doubt_marks(app: &TestApp) -> i64 {
    app.fetch_one::<(i64,)>("SELECT COUNT(*) FROM message WHERE in_doubt_since IS NOT NULL")
        .await
        .0
}

#[tokio::test]
async fn a_send_in_doubt_that_twilio_has_is_recorded_from_its_list_and_not_sent_again() {
    // Arrange: Twilio has the message (delivered), beside three that look like it but are
    // not: another body, another sender, and the same text sent two hours before.
    let stub = TwilioStub::start().await;
    let to = number("7100");
    let body = "Your table for two is booked for 8 pm.";
    let (app, ids) = claimed_by_a_dead_worker(&stub, &[(&to, body)]).await;
    let hours_ago = Duration::from_secs(2 * 3600);
    stub.add_message(StubMessage::delivered("SMold", &to, body, hours_ago));
    stub.add_message(StubMessage::delivered("SMfound", &to, body, Duration::ZERO));
    stub.add_message(StubMessage::delivered(
        "SMother",
        &to,
        "Another text",
        Duration::ZERO,
    ));
    let mut other_sender = StubMessage::delivered("SMsender", &to, body, Duration::ZERO);
    other_sender.from = Some("+15005550006".into());
    stub.add_message(other_sender);

    // Act
    let app = restart(app, &stub).await;
    let view = app.wait_for_status(&ids[0], "delivered").await;

    // Assert
    assert_eq!(view["provider_message_id"], "SMfound", "{view}");
    assert!(
        stub.sends().is_empty(),
        "nothing was sent again: {:?}",
        stub.sends()
    );
    let search = &stub.searches()[0];
    assert_eq!(search.param("To"), Some(to.as_str()));
    assert_eq!(search.param("From"), Some(FROM));
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let day = search.param("DateSent>").expect("a DateSent> filter");
    assert!(day == today || day == yesterday, "DateSent>={day}");
    assert_eq!(
        crate::helpers::history_statuses(&view),
        ["queued", "sending", "sent", "delivered"]
    );
    let found = metric(
        &app.client,
        &app.address,
        &twilio_series("in_doubt_lookups", "found"),
    )
    .await;
    assert_eq!(found, 1.0);
    assert_eq!(metric(&app.client, &app.address, RESENT).await, 0.0);
    assert_eq!(in_doubt_marks(&app).await, 0, "the mark is cleared");
}

#[tokio::test]
async fn a_send_in_doubt_that_twilio_does_not_have_is_sent_once() {
    // Arrange: only look-alikes (another body, another sender, too old).
    let stub = TwilioStub::start().await;
    let to = number("7101");
    let body = "Your parcel arrives tomorrow.";
    let (app, ids) = claimed_by_a_dead_worker(&stub, &[(&to, body)]).await;
    stub.add_message(StubMessage::delivered(
        "SMother",
        &to,
        "Your parcel left",
        Duration::ZERO,
    ));
    stub.add_message(StubMessage::delivered(
        "SMold",
        &to,
        body,
        Duration::from_secs(3 * 3600),
    ));
    let mut other_sender = StubMessage::delivered("SMsender", &to, body, Duration::ZERO);
    other_sender.from = Some("+15005550006".into());
    stub.add_message(other_sender);

    // Act
    let app = restart(app, &stub).await;
    let view = app.wait_for_status(&ids[0], "sent").await;

    // Assert: searched with and without the date filter, then sent once.
    let sends = stub.sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    assert_eq!(sends[0].field("Body"), Some(body));
    let sid = stub
        .messages()
        .into_iter()
        .find(|m| m.body == body && m.date_sent.is_some() && m.sid.starts_with("SM0"))
        .expect("the new message")
        .sid;
    assert_eq!(view["provider_message_id"], sid.as_str());
    let searches = stub.searches();
    assert_eq!(searches.len(), 2, "{searches:?}");
    assert!(searches[0].param("DateSent>").is_some());
    assert!(
        searches[1].param("DateSent>").is_none(),
        "the undated look at the newest page"
    );
    let not_found = twilio_series("in_doubt_lookups", "not_found");
    assert_eq!(metric(&app.client, &app.address, &not_found).await, 1.0);
    assert_eq!(metric(&app.client, &app.address, RESENT).await, 0.0);
    assert_eq!(in_doubt_marks(&app).await, 0);
}

#[tokio::test]
async fn a_search_follows_twilios_pages_to_the_message() {
    // Arrange: the message is the oldest of 121 to this number today, on the third page.
    let stub = TwilioStub::start().await;
    let to = number("7102");
    let body = "Reminder: dentist at 9:30.";
    let (app, ids) = claimed_by_a_dead_worker(&stub, &[(&to, body)]).await;
    stub.add_message(StubMessage::delivered("SMfound", &to, body, Duration::ZERO));
    for i in 0..120 {
        let sid = format!("SMnoise{i}");
        stub.add_message(StubMessage::delivered(
            &sid,
            &to,
            &format!("noise {i}"),
            Duration::ZERO,
        ));
    }

    // Act
    let app = restart(app, &stub).await;
    let view = app.wait_for_status(&ids[0], "delivered").await;

    // Assert
    assert_eq!(view["provider_message_id"], "SMfound");
    assert!(stub.sends().is_empty());
    let pages: Vec<Option<String>> = stub
        .searches()
        .iter()
        .map(|s| s.param("Page").map(str::to_owned))
        .collect();
    assert_eq!(pages, [None, Some("1".to_owned()), Some("2".to_owned())]);
}

#[tokio::test]
async fn a_message_twilio_still_holds_has_no_date_sent_and_is_found_all_the_same() {
    // Arrange: Twilio queued it (no date_sent yet): a DateSent filter does not list it.
    let stub = TwilioStub::start().await;
    let to = number("7103");
    let body = "Flash sale ends at midnight.";
    let (app, ids) = claimed_by_a_dead_worker(&stub, &[(&to, body)]).await;
    let mut queued = StubMessage::delivered("SMqueued", &to, body, Duration::ZERO);
    queued.date_sent = None;
    queued.status = "queued".into();
    stub.add_message(queued);

    // Act
    let app = restart(app, &stub).await;
    let view = app.wait_for_status(&ids[0], "sent").await;

    // Assert
    assert_eq!(view["provider_message_id"], "SMqueued");
    assert!(stub.sends().is_empty());
    assert_eq!(stub.searches().len(), 2);
}

#[tokio::test]
async fn a_search_that_fails_sends_nothing_and_is_asked_again() {
    // Arrange: Twilio has it, but the first two searches fail (503, then 429).
    let stub = TwilioStub::start().await;
    let to = number("7104");
    let body = "Your code is 482913.";
    let (app, ids) = claimed_by_a_dead_worker(&stub, &[(&to, body)]).await;
    stub.add_message(StubMessage::delivered("SMfound", &to, body, Duration::ZERO));
    stub.script_list(Scripted {
        status: 503,
        retry_after: None,
        code: 20503,
    });
    stub.script_list(Scripted {
        status: 429,
        retry_after: None,
        code: 20429,
    });

    // Act
    let app = restart(app, &stub).await;
    // While the searches fail, the message stays in doubt and nothing is sent.
    eventually("two failed searches", PATIENCE, || async {
        (stub.searches().len() >= 2).then_some(())
    })
    .await;
    assert!(
        stub.sends().is_empty(),
        "nothing is sent while Twilio cannot be asked"
    );
    let view = app.wait_for_status(&ids[0], "delivered").await;

    // Assert
    assert_eq!(view["provider_message_id"], "SMfound");
    assert!(stub.sends().is_empty(), "{:?}", stub.sends());
    assert_eq!(stub.searches().len(), 3);
    let failed = twilio_series("in_doubt_lookups", "failed");
    assert_eq!(metric(&app.client, &app.address, &failed).await, 2.0);
    let (attempts,): (i64,) = app
        .fetch_one(&format!(
            "SELECT attempts FROM message WHERE message_id = '{}'",
            ids[0]
        ))
        .await;
    assert_eq!(
        attempts, 4,
        "the doomed claim, two failed searches, the one that found it"
    );
    assert_eq!(metric(&app.client, &app.address, RESENT).await, 0.0);
}

#[tokio::test]
async fn a_candidate_another_message_already_carries_is_not_taken() {
    // Arrange: the same text to the same number twice. The first went out and is recorded
    // with Twilio's id; the second was left in doubt before it reached Twilio.
    let stub = TwilioStub::start().await;
    let to = number("7105");
    let body = "Same text twice.";
    let app = spawn_in(test_dir(), &twilio_toml(&stub.url, ""), true).await;
    let first = app.send_ok(&to, body).await;
    let view = app.wait_for_status(&first, "sent").await;
    let first_sid = crate::twilio_stub::provider_id(&view);
    let dir = app.stop().await;
    let app = spawn_in(dir, &twilio_toml(&stub.url, ""), false).await;
    let second = app.send_ok(&to, body).await;
    let claimed = app
        .store
        .claim_due("worker-killed", 1, Duration::from_secs(600), true)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);

    // Act
    let app = restart(app, &stub).await;
    let view = app.wait_for_status(&second, "sent").await;

    // Assert: the search found only the first's message, so the second was sent.
    assert_eq!(stub.sends().len(), 2);
    assert_ne!(crate::twilio_stub::provider_id(&view), first_sid);
}

#[tokio::test]
async fn with_a_fallback_an_unbound_message_is_searched_for_at_both_providers() {
    // Arrange: Twilio primary, the mock as fallback. Two messages in doubt: one free (the
    // dead worker may have used either provider), one bound to Twilio (an earlier attempt
    // there got no answer). Neither provider has them.
    let stub = TwilioStub::start().await;
    let toml = twilio_toml(&stub.url, "").replace(
        "sms = \"twilio\"\n",
        "sms = \"twilio\"\nsms_fallback = \"mock\"\n",
    );
    let app = spawn_in(test_dir(), &toml, false).await;
    let free = app.send_ok(&number("7106"), "Free to go anywhere.").await;
    let bound = app.send_ok(&number("7107"), "Bound to Twilio.").await;
    let claimed = app
        .store
        .claim_due("worker-killed", 2, Duration::from_secs(600), true)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    app.execute(&format!(
        "UPDATE message SET provider = 'twilio' WHERE message_id = '{bound}'"
    ))
    .await;

    // Act
    let dir = app.stop().await;
    let app = spawn_in(dir, &toml, true).await;
    for id in [&free, &bound] {
        app.wait_for_status(id, "sent").await;
    }

    // Assert: Twilio was asked about both, the mock only about the free one; each was then
    // sent once, through the primary.
    let series = |provider: &str| {
        format!("herald_in_doubt_lookups_total{{provider=\"{provider}\",result=\"not_found\"}}")
    };
    assert_eq!(
        metric(&app.client, &app.address, &series("twilio")).await,
        2.0
    );
    assert_eq!(
        metric(&app.client, &app.address, &series("mock")).await,
        1.0
    );
    assert_eq!(stub.sends().len(), 2);
    assert_eq!(
        stub.searches().len(),
        4,
        "two searches (dated, undated) per message"
    );
}

#[tokio::test]
async fn an_opt_out_while_in_doubt_waits_for_the_answer_of_the_provider() {
    // Arrange: two messages in doubt whose recipients opt out before the restart. Twilio has
    // the first (so it was sent before the opt-out), not the second.
    let stub = TwilioStub::start().await;
    let (reached, missed) = (number("7108"), number("7109"));
    let body = "Last call for the spring sale.";
    let (app, ids) = claimed_by_a_dead_worker(&stub, &[(&reached, body), (&missed, body)]).await;
    for to in [&reached, &missed] {
        let response = app
            .post_json("/opt-outs", &serde_json::json!({"phone_number": to}))
            .await;
        assert!(response.status().is_success(), "{}", response.status());
    }
    stub.add_message(StubMessage::delivered(
        "SMreached",
        &reached,
        body,
        Duration::ZERO,
    ));

    // Act
    let app = restart(app, &stub).await;
    let first = app.wait_for_status(&ids[0], "delivered").await;
    let second = app.wait_for_status(&ids[1], "failed").await;

    // Assert: what reached Twilio is recorded (and charged) as sent; the other is not sent.
    assert_eq!(first["provider_message_id"], "SMreached");
    assert_eq!(second["error_code"], "recipient_opted_out", "{second}");
    assert!(stub.sends().is_empty(), "{:?}", stub.sends());
    assert_eq!(in_doubt_marks(&app).await, 0);
}

#[tokio::test]
async fn a_send_whose_answer_never_came_is_found_by_search_not_sent_again() {
    // Arrange: Twilio creates the message at once but answers after 2 s; Herald gives up
    // waiting after 300 ms. The attempt is in doubt though no process died.
    let stub = TwilioStub::start().await;
    stub.delay_answers(Duration::from_secs(2));
    let toml = twilio_toml(&stub.url, "timeout_ms = 300\n");
    let app = spawn_in(test_dir(), &toml, true).await;

    // Act
    let id = app
        .send_ok(&number("7110"), "Your ride is two minutes away.")
        .await;
    let view = app.wait_for_status(&id, "sent").await;

    // Assert: one send, recorded with the sid Twilio gave it, found by the search.
    let sends = stub.sends();
    assert_eq!(sends.len(), 1, "{sends:?}");
    let created = stub.messages();
    assert_eq!(created.len(), 1);
    assert_eq!(view["provider_message_id"], created[0].sid.as_str());
    assert_eq!(stub.searches().len(), 1);
    let found = twilio_series("in_doubt_lookups", "found");
    assert_eq!(metric(&app.client, &app.address, &found).await, 1.0);
    assert_eq!(in_doubt_marks(&app).await, 0);
}

#[tokio::test]
async fn a_whatsapp_send_in_doubt_cannot_be_asked_about_and_is_sent_again_and_counted() {
    // Arrange: the Cloud API has no search and no idempotency key.
    use crate::whatsapp_stub::{WhatsappStub, send_whatsapp, whatsapp_toml};
    let stub = WhatsappStub::start().await;
    let toml = whatsapp_toml(&stub.url, "");
    let app = spawn_in(test_dir(), &toml, false).await;
    let id = send_whatsapp(&app, &number("7111"), serde_json::json!({})).await;
    let claimed = app
        .store
        .claim_due("worker-killed", 1, Duration::from_secs(600), true)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);

    // Act
    let dir = app.stop().await;
    let app = spawn_in(dir, &toml, true).await;
    app.wait_for_status(&id, "sent").await;

    // Assert: sent (again, for all anyone knows), and counted as such.
    assert_eq!(stub.sends().len(), 1);
    let series = |name: &str, labels: &str| format!("herald_{name}_total{{{labels}}}");
    let cannot_ask = series(
        "in_doubt_lookups",
        "provider=\"whatsapp_cloud\",result=\"cannot_ask\"",
    );
    let resent = series("resent_in_doubt", "provider=\"whatsapp_cloud\"");
    assert_eq!(metric(&app.client, &app.address, &cannot_ask).await, 1.0);
    assert_eq!(metric(&app.client, &app.address, &resent).await, 1.0);
    assert_eq!(in_doubt_marks(&app).await, 0);
}
