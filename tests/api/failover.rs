//! Failover: Twilio (the recording stub) as the SMS primary, the mock as its fallback. While
//! Twilio fails, sends go to the mock; once it answers again, traffic returns; a message
//! Twilio may already have (its request timed out) never goes to the mock.

use crate::helpers::{HandoverCounts, PATIENCE, TestApp, eventually, handed_over, number};
use crate::twilio_stub::{Outage, TwilioStub, twilio_toml};
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Herald with Twilio at `stub` as the SMS primary and the mock as its fallback.
async fn spawn_with_fallback(stub: &TwilioStub, twilio: &str, failover: &str) -> TestApp {
    let toml = twilio_toml(
        &stub.url,
        &format!("{twilio}\n[providers.failover]\n{failover}"),
    )
    .replace(
        "sms = \"twilio\"\n",
        "sms = \"twilio\"\nsms_fallback = \"mock\"\n",
    );
    crate::helpers::spawn_app_with(&toml).await
}

/// Waits until the message is with a provider and answers which one took it.
async fn provider_of(app: &TestApp, id: &str) -> String {
    let view = app.wait_for(id, handed_over).await;
    view["provider"].as_str().unwrap_or_default().to_owned()
}

async fn circuit_open(app: &TestApp) -> bool {
    let metrics = crate::helpers::metrics_text(&app.client, &app.address).await;
    metrics
        .lines()
        .any(|l| l.starts_with("herald_provider_circuit_open{") && l.ends_with(" 1"))
}

#[tokio::test]
async fn a_failing_primary_hands_traffic_to_the_fallback_and_gets_it_back_with_nothing_sent_twice()
{
    // Arrange: Twilio answers every send 503.
    let stub = TwilioStub::start().await;
    stub.set_outage(Some(Outage {
        status: 503,
        delay: Duration::ZERO,
    }));
    let app = spawn_with_fallback(&stub, "", "failure_threshold = 3\nopen_seconds = 1").await;
    let mut sent: Vec<(String, String)> = Vec::new();

    // Act 1: three messages fail at Twilio, which opens the circuit; then ten more.
    for i in 0..3 {
        send(&app, &mut sent, format!("during the outage {i}")).await;
    }
    eventually("three refusals open the circuit", PATIENCE, async || {
        circuit_open(&app).await.then_some(())
    })
    .await;
    for i in 0..10 {
        send(&app, &mut sent, format!("while the circuit is open {i}")).await;
    }

    // Assert 1: the mock took them all (the three refused ones on their retries).
    for (id, _) in &sent {
        assert_eq!(provider_of(&app, id).await, "mock", "message {id}");
    }

    // Act 2: Twilio recovers; after open_seconds a probe finds it well and traffic returns.
    stub.set_outage(None);
    let recovered = Instant::now();
    let deadline = recovered + PATIENCE;
    loop {
        let text = format!("after the outage {}", sent.len());
        let id = send(&app, &mut sent, text).await;
        if provider_of(&app, &id).await == "twilio" {
            break;
        }
        assert!(Instant::now() < deadline, "no send went to Twilio again");
    }
    let mut after = Vec::new();
    for i in 0..5 {
        after.push(send(&app, &mut sent, format!("circuit closed again {i}")).await);
    }

    // Assert 2: everything after the probe went to Twilio, and no message went to both.
    for id in &after {
        assert_eq!(provider_of(&app, id).await, "twilio", "message {id}");
    }
    assert!(!circuit_open(&app).await, "the circuit closed");
    let journal = HandoverCounts::from_journal(&app.handover_log());
    // Before `recovered` Twilio refused every send, so only later ones can have reached it.
    let mut at_twilio: HashMap<String, usize> = HashMap::new();
    for body in stub
        .sends()
        .into_iter()
        .filter(|r| r.at >= recovered)
        .filter_map(|r| r.field("Body").map(str::to_owned))
    {
        *at_twilio.entry(body).or_default() += 1;
    }
    for (id, text) in &sent {
        let provider = provider_of(&app, id).await;
        let counts = (
            journal.accepted.get(id).copied().unwrap_or(0),
            at_twilio.get(text).copied().unwrap_or(0),
        );
        match provider.as_str() {
            "mock" => assert_eq!(counts, (1, 0), "{id} went to the mock only"),
            "twilio" => assert_eq!(counts, (0, 1), "{id} went to Twilio only"),
            other => panic!("{id} was taken by {other:?}"),
        }
    }
}

/// Sends `text` (unique per message, so the stub's records can be matched) and notes it.
async fn send(app: &TestApp, sent: &mut Vec<(String, String)>, text: String) -> String {
    let id = app.send_ok(&number("1234"), &text).await;
    sent.push((id.clone(), text));
    id
}

#[tokio::test]
async fn a_message_twilio_may_have_stays_with_twilio_while_others_fail_over() {
    // Arrange: Twilio answers too late for Herald (300 ms timeout): the first send's fate is
    // unknown, and that one failure opens the circuit for an hour.
    let stub = TwilioStub::start().await;
    stub.set_outage(Some(Outage {
        status: 503,
        delay: Duration::from_millis(1_000),
    }));
    // The first message keeps timing out until the second is routed: enough attempts that
    // it never runs out of them meanwhile, however busy the machine.
    let app = spawn_with_fallback(
        &stub,
        "timeout_ms = 300",
        "failure_threshold = 1\nopen_seconds = 3600\n[workers]\nmax_attempts = 1000",
    )
    .await;

    // Act: the first message times out; once that is recorded, a second message is sent,
    // and once it is with a provider, Twilio is well again. (Made well before, Twilio's
    // answer to the first message's next try, 50-200 ms later with the test's backoff,
    // could close the circuit before the second was routed.)
    let in_doubt = app.send_ok(&number("1234"), "sent into the timeout").await;
    eventually("the timeout is recorded", PATIENCE, async || {
        let view: Value = app.status(&in_doubt).await;
        (view["error_code"] == "timeout").then_some(())
    })
    .await;
    let other = app.send_ok(&number("1234"), "sent while open").await;
    let other_went_to = provider_of(&app, &other).await;
    stub.set_outage(None);

    // Assert: the circuit sent the new message to the mock, but the one Twilio may have got
    // went back to Twilio, and never to the mock.
    assert_eq!(other_went_to, "mock");
    assert_eq!(provider_of(&app, &in_doubt).await, "twilio");
    let journal = HandoverCounts::from_journal(&app.handover_log());
    assert_eq!(
        journal.accepted.get(&in_doubt),
        None,
        "{:?}",
        journal.accepted
    );
    assert_eq!(journal.accepted.get(&other), Some(&1));
    let to_twilio = stub
        .sends()
        .iter()
        .filter(|r| r.field("Body") == Some("sent into the timeout"))
        .count();
    assert!(
        to_twilio >= 2,
        "the timed-out attempt and its retry: {to_twilio}"
    );
    assert!(
        stub.sends()
            .iter()
            .all(|r| r.field("Body") != Some("sent while open"))
    );
}
