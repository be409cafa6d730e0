//! Campaigns (SPEC §1, §3, §7), through the HTTP API on a real SQLite file: lists as JSON and
//! as streamed CSV, rendering per recipient, rejections, opt-outs, dry runs, pause, resume,
//! cancel, running out of money, and single sends that keep their speed meanwhile.

use crate::helpers::TestApp;
use crate::helpers::{
    PATIENCE, eventually, handed_over, number, read_handover_log, spawn_app, spawn_app_with,
    toml_path,
};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// `count` distinct valid US numbers (+1 415 2xx xxxx) ending in 5, clear of the mock's
/// special endings 0000–0004.
pub(crate) fn campaign_numbers(count: u32) -> Vec<String> {
    (0..count)
        .map(|i| format!("+1415{:07}", 2_000_005 + u64::from(i) * 10))
        .collect()
}

/// A CSV list: `phone_number,name,code` rows for `numbers`.
pub(crate) fn csv_for(numbers: &[String]) -> String {
    let mut csv = String::from("phone_number,name,code\n");
    for (i, n) in numbers.iter().enumerate() {
        csv.push_str(&format!("{n},Customer {i},C{i}\n"));
    }
    csv
}

/// An app whose mock provider logs every hand-over to a file (returned), plus `extra` TOML
/// for `[providers.mock]`.
async fn spawn_with_handover_log(mock: &str) -> (TestApp, std::path::PathBuf) {
    let dir = crate::helpers::test_dir();
    let path = dir.path().join("handover.log");
    let app = crate::helpers::spawn_in(
        dir,
        &format!(
            "[providers.mock]\n{mock}handover_log = {}\n",
            toml_path(&path)
        ),
        true,
    )
    .await;
    (app, path)
}

impl TestApp {
    pub(crate) async fn upload_csv(
        &self,
        csv: String,
        query: &[(&str, &str)],
    ) -> reqwest::Response {
        self.client
            .post(self.url("/campaigns/upload"))
            .bearer_auth(&self.api_key)
            .header("content-type", "text/csv")
            .query(query)
            .body(csv)
            .send()
            .await
            .expect("the request is sent")
    }

    pub(crate) async fn create_campaign(&self, body: &Value) -> Value {
        let response = self.post_json("/campaigns", body).await;
        let status = response.status();
        let created: Value = response.json().await.expect("JSON");
        assert_eq!(status, 202, "{created}");
        created
    }

    /// GETs `path` with this app's key: (status, body).
    pub(crate) async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .expect("the request is sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON"))
    }

    pub(crate) async fn campaign(&self, id: &str) -> Value {
        let response = self
            .client
            .get(self.url(&format!("/campaigns/{id}")))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .expect("the request is sent");
        assert_eq!(response.status(), 200);
        response.json().await.expect("JSON")
    }

    pub(crate) async fn command(&self, id: &str, command: &str) -> (u16, Value) {
        let response = self
            .post_json(&format!("/campaigns/{id}/{command}"), &json!({}))
            .await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON"))
    }

    /// Waits until the campaign's status is `status`; returns the campaign.
    pub(crate) async fn wait_campaign(&self, id: &str, status: &str) -> Value {
        eventually(
            &format!("campaign {id} to be {status}"),
            PATIENCE * 3,
            || async {
                let c = self.campaign(id).await;
                (c["status"] == status).then_some(c)
            },
        )
        .await
    }

    /// (phone number, body, status) of every message of a campaign.
    pub(crate) async fn campaign_messages(&self, id: &str) -> Vec<(String, String, String)> {
        self.fetch_all(&format!(
            "SELECT phone_number, body, status FROM message WHERE campaign_id = '{id}'"
        ))
        .await
    }
}

#[tokio::test]
async fn each_recipient_gets_the_template_rendered_with_its_own_variables() {
    let app = spawn_app().await;
    let created = app
        .create_campaign(&json!({
            "name": "Spring sale",
            "template": "Hi {{name}}, {{offer}} at {{shop}}. Reply STOP to opt out.",
            "variables": {"shop": "Main St", "offer": "10% off"},
            "recipients": [
                {"phone_number": "+14155550110", "variables": {"name": "Ana"}},
                {"phone_number": "+14155550111", "variables": {"name": "Bo", "offer": "20% off"}},
            ],
        }))
        .await;
    assert_eq!(created["recipients_accepted"], 2);
    let id = created["campaign_id"].as_str().unwrap();
    let done = app.wait_campaign(id, "completed").await;
    assert_eq!(done["counters"]["handed_over"], 2, "{done}");

    // Ids made by the fan-out are ordinary message ids.
    let ids: Vec<(String,)> = app
        .fetch_all(&format!(
            "SELECT message_id FROM message WHERE campaign_id = '{id}'"
        ))
        .await;
    let ids: Vec<String> = ids.into_iter().map(|(id,)| id).collect();
    for message_id in &ids {
        app.wait_for_status(message_id, "read").await;
    }

    let bodies: HashMap<String, String> = app
        .campaign_messages(id)
        .await
        .into_iter()
        .map(|(phone, body, _)| (phone, body))
        .collect();
    assert_eq!(
        bodies["+14155550110"],
        "Hi Ana, 10% off at Main St. Reply STOP to opt out."
    );
    assert_eq!(
        bodies["+14155550111"], "Hi Bo, 20% off at Main St. Reply STOP to opt out.",
        "a recipient's variable overrides the campaign's"
    );
}

#[tokio::test]
async fn a_missing_variable_rejects_only_that_recipient() {
    let app = spawn_app().await;
    let created = app
        .create_campaign(&json!({
            "name": "Reminders",
            "template": "Dear {{name}}, see you on {{date}}.",
            "variables": {"date": "Monday"},
            "recipients": [
                {"phone_number": "+14155550120", "variables": {"name": "Ana"}},
                {"phone_number": "+14155550121", "variables": {}},
                {"phone_number": "+14155550122", "variables": {"name": ""}},
                {"phone_number": "+14155550123", "variables": {"name": "Cy"}},
            ],
        }))
        .await;
    assert_eq!(created["recipients_total"], 4);
    assert_eq!(created["recipients_accepted"], 2);
    let rejected = created["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2, "{created}");
    for r in rejected {
        assert_eq!(r["code"], "template_error");
        assert!(r["error"].as_str().unwrap().contains("name"), "{r}");
    }
    let id = created["campaign_id"].as_str().unwrap();
    app.wait_campaign(id, "completed").await;
    let phones: HashSet<String> = app
        .campaign_messages(id)
        .await
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(
        phones,
        HashSet::from(["+14155550120".to_owned(), "+14155550123".to_owned()]),
        "nobody is sent a message with a blank"
    );
}

#[tokio::test]
async fn the_seed_endpoint_dedupes_numbers_after_normalization() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/create-campaign-send/",
            &json!({
                "campaign_name": "My Marketing Campaign",
                "message_template": "Hello {{name}}! Special offer for you!",
                "variables": {"name": "friend"},
                "phone_numbers": ["+14155550130", "(415) 555-0130", "415.555.0130", "+1 415 555 0131", "+1234567890"],
                "priority": "normal",
                "use_ai_personalization": false,
            }),
        )
        .await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["success"], true);
    assert!(created["campaign_id"].as_str().unwrap().starts_with("cmp_"));
    assert_eq!(created["recipients_total"], 5);
    assert_eq!(created["recipients_accepted"], 2);
    let codes: Vec<&str> = created["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "duplicate_recipient",
            "duplicate_recipient",
            "invalid_phone_number"
        ]
    );
    assert_eq!(created["estimated_segments"], 2);
    assert_eq!(created["estimated_cost"], 0.015);

    let id = created["campaign_id"].as_str().unwrap();
    app.wait_campaign(id, "completed").await;
    assert_eq!(app.campaign_messages(id).await.len(), 2, "each number once");

    // No sendable recipient at all: 422 with the same list of reasons.
    let response = app
        .post_json(
            "/create-campaign-send/",
            &json!({"campaign_name": "x", "message_template": "Hi", "phone_numbers": ["+1234567890"]}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "no_valid_recipients");
    assert_eq!(body["rejected"][0]["code"], "invalid_phone_number");

    let response = app
        .post_json(
            "/create-campaign-send/",
            &json!({"campaign_name": "x", "message_template": "Hi {{#if}}", "phone_numbers": ["+14155550130"]}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "template_error");
    assert_eq!(body["field"], "message_template");

    let response = app
        .post_json(
            "/create-campaign-send/",
            &json!({"campaign_name": "x", "message_template": "Hi", "phone_numbers": ["+14155550130"], "use_ai_personalization": true}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "unsupported");
}

#[tokio::test]
async fn opted_out_numbers_are_skipped_and_counted_and_single_sends_to_them_refused() {
    let app = spawn_app().await;
    let before = number("0140");
    let later = number("0141");
    let response = app
        .post_json("/opt-outs", &json!({"phone_number": "(415) 555-0140"}))
        .await;
    assert_eq!(response.status(), 201);

    let response = app
        .send_message(&json!({"phone_number": before, "message": "hi"}))
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "recipient_opted_out");
    // In bulk, the opted-out number is refused and the others go.
    let response = app
        .post_json(
            "/send-bulk/",
            &json!({"messages": [
                {"phone_number": number("0143"), "message": "hi"},
                {"phone_number": before, "message": "hi"},
                {"phone_number": number("0144"), "message": "hi"},
            ]}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    let outcomes: Vec<(bool, &str)> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["success"] == true, r["code"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        outcomes,
        [(true, ""), (false, "recipient_opted_out"), (true, "")],
        "{body}"
    );

    // Single sends at once, which the writer accepts together: each number is refused only if
    // it opted out.
    let numbers: Vec<String> = (0..20).map(|i| number(&format!("02{i:02}"))).collect();
    for opted in numbers.iter().step_by(2) {
        let response = app
            .post_json("/opt-outs", &json!({ "phone_number": opted }))
            .await;
        assert_eq!(response.status(), 201);
    }
    let bodies: Vec<Value> = numbers
        .iter()
        .map(|n| json!({"phone_number": n, "message": "hi"}))
        .collect();
    let answers = futures::future::join_all(bodies.iter().map(|b| app.send_message(b))).await;
    let mut outcomes = Vec::new();
    for answer in answers {
        let status = answer.status().as_u16();
        let body: Value = answer.json().await.unwrap();
        outcomes.push((status, body["code"].as_str().unwrap_or("").to_owned()));
    }
    let expected: Vec<(u16, String)> = (0..numbers.len())
        .map(|i| match i % 2 {
            0 => (400, "recipient_opted_out".to_owned()),
            _ => (202, String::new()),
        })
        .collect();
    assert_eq!(outcomes, expected);

    // Scheduled a moment ahead, so `later` opts out after the list was loaded but before
    // the fan-out reaches it.
    let start = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let created = app
        .create_campaign(&json!({
            "name": "News",
            "template": "News for {{phone_number}}",
            "phone_numbers": [before, later, number("0142")],
            "scheduled_at": start.to_rfc3339(),
        }))
        .await;
    assert_eq!(created["status"], "scheduled");
    assert_eq!(created["recipients_accepted"], 2);
    assert_eq!(created["opted_out"], 1);
    assert_eq!(created["rejected"][0]["code"], "recipient_opted_out");
    let response = app
        .post_json("/opt-outs", &json!({"phone_number": later}))
        .await;
    assert_eq!(response.status(), 201);

    let id = created["campaign_id"].as_str().unwrap();
    let done = app.wait_campaign(id, "completed").await;
    assert_eq!(done["counters"]["opted_out"], 2, "{done}");
    assert_eq!(done["counters"]["handed_over"], 1, "{done}");
    let phones: Vec<String> = app
        .campaign_messages(id)
        .await
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(phones, [number("0142")]);

    // Reported, not silently dropped.
    let rejections: Value = app.get_json(&format!("/campaigns/{id}/rejections")).await.1;
    let skipped: Vec<&str> = rejections["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["phone_number"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, [before.as_str(), later.as_str()]);

    // Opting back in lets messages through again.
    let response = app
        .client
        .delete(app.url("/opt-outs/%2B14155550140"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = app
        .send_message(&json!({"phone_number": before, "message": "welcome back"}))
        .await;
    assert_eq!(response.status(), 202);
}

#[tokio::test]
async fn a_queued_message_to_a_number_that_opts_out_fails_and_is_never_sent() {
    let (app, path) = spawn_with_handover_log("").await;
    let later = chrono::Utc::now() + chrono::Duration::milliseconds(800);
    let response = app
        .send_message(&json!({"phone_number": number("0150"), "message": "soon", "scheduled_at": later.to_rfc3339()}))
        .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .post_json("/opt-outs", &json!({"phone_number": number("0150")}))
        .await;
    assert_eq!(response.status(), 201);
    let view = app.wait_for_status(&id, "failed").await;
    assert_eq!(view["error_code"], "recipient_opted_out");
    assert!(read_handover_log(&path).iter().all(|(m, _, _)| *m != id));
    assert_eq!(
        app.balance().await["balance"],
        1000.0,
        "its reservation was released"
    );
}

#[tokio::test]
async fn a_dry_run_sends_nothing_and_predicts_what_the_real_run_charges() {
    let app = spawn_app().await;
    let mut numbers = campaign_numbers(300);
    numbers.push("not a number".to_owned());
    numbers.push(numbers[0].clone());
    let csv = csv_for(&numbers);
    // A long text: two segments for everyone, which the estimate must count too.
    let template = "Hello {{name}}, your code is {{code}}. This message is long enough to take \
                    two segments of a GSM-7 SMS, which is what the estimate must count as well, \
                    and what the account is then charged for each of them.";
    let query = [("name", "Dry"), ("template", template), ("dry_run", "true")];
    let response = app.upload_csv(csv.clone(), &query).await;
    assert_eq!(response.status(), 200);
    let dry: Value = response.json().await.unwrap();
    assert_eq!(dry["campaign_id"], Value::Null);
    assert_eq!(dry["status"], "dry_run");
    assert_eq!(dry["recipients_total"], 302);
    assert_eq!(dry["recipients_accepted"], 300);
    assert_eq!(dry["rejected_by_code"]["invalid_phone_number"], 1);
    assert_eq!(dry["rejected_by_code"]["duplicate_recipient"], 1);
    assert_eq!(dry["estimated_segments"], 600);
    assert_eq!(
        app.balance().await["balance"],
        1000.0,
        "a dry run reserves nothing"
    );
    let (messages,): (i64,) = app.fetch_one("SELECT COUNT(*) FROM message").await;
    assert_eq!(messages, 0, "a dry run sends nothing");
    let list: Value = app.get_json("/campaigns").await.1;
    assert_eq!(
        list["campaigns"].as_array().unwrap().len(),
        0,
        "nor creates a campaign"
    );

    let query = [("name", "Real"), ("template", template)];
    let response = app.upload_csv(csv, &query).await;
    assert_eq!(response.status(), 202);
    let real: Value = response.json().await.unwrap();
    assert_eq!(real["estimated_cost"], dry["estimated_cost"]);
    let id = real["campaign_id"].as_str().unwrap();
    let done = app.wait_campaign(id, "completed").await;
    assert_eq!(done["cost_so_far"], dry["estimated_cost"]);
    let spent = 1000.0 - app.balance().await["balance"].as_f64().unwrap();
    let predicted = dry["estimated_cost"].as_f64().unwrap();
    assert!(
        (spent - predicted).abs() < 1e-9,
        "spent {spent}, predicted {predicted}"
    );
}

/// A slow provider (50 messages/s) so a campaign is still sending when commands arrive.
const SLOW: &str = "sender_per_second = 50\n";

#[tokio::test]
async fn pause_stops_sends_within_a_second_and_resume_sends_the_rest_once() {
    let (app, path) = spawn_with_handover_log(SLOW).await;
    let numbers = campaign_numbers(300);
    let created = app
        .create_campaign(
            &json!({"name": "Slow", "template": "Hi {{phone_number}}", "phone_numbers": numbers}),
        )
        .await;
    let id = created["campaign_id"].as_str().unwrap();
    eventually("some messages to go out", PATIENCE, || async {
        (read_handover_log(&path).len() >= 20).then_some(())
    })
    .await;

    let (status, paused) = app.command(id, "pause").await;
    let paused_at = chrono::Utc::now().timestamp_millis();
    assert_eq!(status, 200, "{paused}");
    assert_eq!(paused["status"], "paused");
    assert_eq!(paused["pause_reason"], "requested");

    // Watch for two seconds: nothing may be handed over later than a second after the pause.
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = read_handover_log(&path);
    let last = log.iter().map(|(_, _, at)| *at).max().unwrap();
    assert!(
        last <= paused_at + 1000,
        "a message went out {} ms after the pause",
        last - paused_at
    );
    assert!(log.len() < 300, "the pause came before the end");

    let (status, resumed) = app.command(id, "resume").await;
    assert_eq!(status, 200, "{resumed}");
    assert_eq!(resumed["status"], "running");
    let done = app.wait_campaign(id, "completed").await;
    assert_eq!(done["counters"]["handed_over"], 300, "{done}");
    let log = read_handover_log(&path);
    let ids: HashSet<&str> = log.iter().map(|(m, _, _)| m.as_str()).collect();
    assert_eq!(ids.len(), 300, "every recipient once");
    assert_eq!(log.len(), 300, "none twice");

    // Finished campaigns take no more commands.
    let (status, body) = app.command(id, "pause").await;
    assert_eq!(status, 409);
    assert_eq!(body["code"], "invalid_state");
}

#[tokio::test]
async fn cancel_leaves_no_message_queued_and_refunds_the_rest() {
    let (app, path) = spawn_with_handover_log(SLOW).await;
    let created = app
        .create_campaign(
            &json!({"name": "Cancel me", "template": "Hi", "phone_numbers": campaign_numbers(300)}),
        )
        .await;
    let id = created["campaign_id"].as_str().unwrap();
    eventually("some messages to go out", PATIENCE, || async {
        (read_handover_log(&path).len() >= 10).then_some(())
    })
    .await;
    let (status, canceled) = app.command(id, "cancel").await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["counters"]["queued"], 0, "{canceled}");
    let (queued,): (i64,) = app
        .fetch_one(&format!(
            "SELECT COUNT(*) FROM message WHERE campaign_id = '{id}' AND status = 'queued'"
        ))
        .await;
    assert_eq!(queued, 0);

    // What was claimed before the cancel settles within a moment; then the money adds up.
    let settled = eventually("in-flight messages to settle", PATIENCE, || async {
        let c = app.campaign(id).await;
        (c["counters"]["sending"] == 0).then_some(c)
    })
    .await;
    let sent = settled["counters"]["handed_over"].as_i64().unwrap();
    assert!(sent < 300, "the cancel came before the end");
    assert_eq!(read_handover_log(&path).len() as i64, sent);
    let balance = app.balance().await["balance"].as_f64().unwrap();
    let expected = 1000.0 - sent as f64 * 0.0075;
    assert!((balance - expected).abs() < 1e-9, "{balance} vs {expected}");
    let (status, body) = app.command(id, "resume").await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test]
async fn a_campaign_that_runs_out_of_balance_pauses_with_the_reason() {
    let app = spawn_app().await;
    // Enough for exactly 10 single-segment messages.
    let key = app.create_account("small", "0.075", 1_000_000).await;
    let response = app
        .post_json_as(
            "/campaigns",
            &json!({"name": "Too big", "template": "Hello", "phone_numbers": campaign_numbers(25)}),
            &key,
        )
        .await;
    assert_eq!(
        response.status(),
        202,
        "the estimate is shown, not enforced up front"
    );
    let id = response.json::<Value>().await.unwrap()["campaign_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let paused = eventually("the campaign to pause", PATIENCE, || async {
        let c: Value = app
            .client
            .get(app.url(&format!("/campaigns/{id}")))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (c["status"] == "paused").then_some(c)
    })
    .await;
    assert_eq!(paused["pause_reason"], "insufficient_balance");
    assert_eq!(
        app.campaign_messages(&id).await.len(),
        10,
        "exactly what the money covered"
    );
    // Another account cannot see it.
    let response = app
        .client
        .get(app.url(&format!("/campaigns/{id}")))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn csv_uploads_refuse_bad_input_and_leave_nothing_behind() {
    let app = spawn_app_with("[campaigns]\nmax_upload_bytes = 4096\n").await;
    let query = [("name", "x"), ("template", "Hi {{name}}")];
    let response = app
        .client
        .post(app.url("/campaigns/upload"))
        .bearer_auth(&app.api_key)
        .header("content-type", "application/json")
        .query(&query)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);

    let response = app
        .upload_csv("number,name\n+14155550160,A\n".into(), &query)
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["field"], "csv");

    let response = app
        .upload_csv(
            "phone_number\n+14155550160\n".into(),
            &[("name", "x"), ("template", "{{#each}}")],
        )
        .await;
    assert_eq!(response.status(), 422);

    let big = csv_for(&campaign_numbers(500));
    let response = app.upload_csv(big, &query).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "payload_too_large");
    let (leftovers,): (i64,) = app
        .fetch_one(
            "SELECT (SELECT COUNT(*) FROM campaign) + (SELECT COUNT(*) FROM campaign_recipient)",
        )
        .await;
    assert_eq!(leftovers, 0, "a failed upload writes nothing that stays");

    let endless = format!("phone_number,name\n+14155550160,\"{}", "x\n".repeat(40_000));
    let app_big = spawn_app().await;
    let response = app_big.upload_csv(endless, &query).await;
    assert_eq!(
        response.status(),
        400,
        "one endless quoted field is refused, not buffered"
    );
    assert!(
        response.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("64 KiB")
    );

    // Quoted fields, a BOM, CRLF, a column for each variable.
    let csv = "\u{feff}phone_number,name\r\n\"+1 (415) 555-0161\",\"Smith, Jo\"\r\n";
    let response = app.upload_csv(csv.into(), &query).await;
    assert_eq!(response.status(), 202);
    let created: Value = response.json().await.unwrap();
    let id = created["campaign_id"].as_str().unwrap();
    app.wait_campaign(id, "completed").await;
    assert_eq!(app.campaign_messages(id).await[0].1, "Hi Smith, Jo");
}

#[tokio::test]
async fn templates_are_listed_created_and_previewed() {
    let app = spawn_app().await;
    let list: Value = app.get_json("/templates").await.1;
    let names: Vec<&str> = list["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for shipped in ["appointment_reminder", "order_update", "otp"] {
        assert!(names.contains(&shipped), "{names:?}");
    }

    let response = app
        .post_json(
            "/templates",
            &json!({"name": "welcome", "body": "Welcome {{name}} 👋"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let response = app
        .post_json(
            "/templates",
            &json!({"name": "broken", "body": "{{#if x}}"}),
        )
        .await;
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.json::<Value>().await.unwrap()["code"],
        "template_error"
    );

    let preview: Value = app
        .post_json(
            "/templates/preview",
            &json!({"template_name": "welcome", "variables": {"name": "Ana"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(preview["text"], "Welcome Ana 👋");
    assert_eq!(preview["encoding"], "UCS-2");
    assert_eq!(preview["segments"], 1);
    assert_eq!(preview["cost"], 0.0075);

    let response = app
        .post_json("/templates/preview", &json!({"template_name": "welcome"}))
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("name"), "{body}");

    // A campaign can use a template by name.
    let created = app
        .create_campaign(&json!({"name": "w", "template_name": "otp", "variables": {"code": "123456", "minutes": "5"}, "phone_numbers": [number("0170")]}))
        .await;
    assert_eq!(created["recipients_accepted"], 1, "{created}");
}

#[tokio::test]
async fn stats_count_messages_by_status_day_and_channel() {
    let app = spawn_app().await;
    let ok = app.send_ok(&number("0180"), "hello").await;
    let failed = app.send_ok(&number("0000"), "hello").await;
    let response = app
        .send_message(
            &json!({"phone_number": number("0181"), "message": "hi", "channel": "whatsapp"}),
        )
        .await;
    let wa = response.json::<Value>().await.unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_status(&ok, "read").await;
    app.wait_for_status(&failed, "failed").await;
    app.wait_for_status(&wa, "read").await;

    let stats: Value = app.get_json("/stats/?days=7").await.1;
    assert_eq!(stats["days"], 7);
    assert_eq!(stats["totals"]["read"], 2);
    assert_eq!(stats["totals"]["failed"], 1);
    assert_eq!(stats["totals"]["total"], 3);
    assert_eq!(stats["by_channel"]["whatsapp"]["read"], 1);
    assert_eq!(stats["by_channel"]["sms"]["total"], 2);
    assert_eq!(stats["by_day"].as_array().unwrap().len(), 7);
    assert_eq!(stats["by_day"][6]["total"], 3, "today is the last day");
    assert_eq!(stats["delivery_rate"], 1.0);
    assert_eq!(stats["read_rate"], 1.0);
    assert_eq!(stats["cost"], 0.0125);

    for bad in ["0", "367", "abc", "1.5"] {
        let response = app
            .client
            .get(app.url(&format!("/stats/?days={bad}")))
            .bearer_auth(&app.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "days={bad}");
        assert_eq!(response.json::<Value>().await.unwrap()["field"], "days");
    }
}

#[tokio::test]
async fn urgent_single_sends_during_a_100k_campaign_reach_sent_within_a_second() {
    let app =
        spawn_app_with("[providers.mock]\ndeliver_after_ms = 200\nread_after_ms = 1000\n").await;
    let csv = csv_for(&campaign_numbers(100_000));
    let response = app
        .upload_csv(
            csv,
            &[("name", "Big"), ("template", "Hi {{name}}, code {{code}}")],
        )
        .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["campaign_id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the campaign to be sending", PATIENCE, || async {
        let c = app.campaign(&id).await;
        (c["counters"]["handed_over"].as_i64().unwrap() > 1000).then_some(())
    })
    .await;

    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let posted = Instant::now();
        let response = app
            .send_message(&json!({"phone_number": number(&format!("{:04}", 190 + i)), "message": "urgent", "priority": "urgent"}))
            .await;
        assert_eq!(response.status(), 202);
        let message_id = response.json::<Value>().await.unwrap()["message_id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.wait_for(&message_id, handed_over).await;
        slowest = slowest.max(posted.elapsed());
    }
    let c = app.campaign(&id).await;
    assert!(
        c["counters"]["queued"].as_i64().unwrap() > 0,
        "the campaign was still running when the last urgent message went: {c}"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "an urgent message took {slowest:?}"
    );
}

#[tokio::test]
async fn a_repeated_campaign_request_with_the_same_key_creates_one_campaign() {
    let app = spawn_app().await;
    let csv = csv_for(&campaign_numbers(50));
    let send = |csv: String| {
        app.client
            .post(app.url("/campaigns/upload"))
            .bearer_auth(&app.api_key)
            .header("content-type", "text/csv")
            .header("idempotency-key", "launch-42")
            .query(&[("name", "Once"), ("template", "Hi {{name}}")])
            .body(csv)
            .send()
    };
    let (first, second) = tokio::join!(send(csv.clone()), send(csv.clone()));
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (202, 202)
    );
    let replayed = [&first, &second]
        .iter()
        .filter(|r| r.headers().get("idempotent-replayed").is_some())
        .count();
    assert_eq!(replayed, 1, "one of the two is a replay");
    let (a, b): (Value, Value) = (first.json().await.unwrap(), second.json().await.unwrap());
    assert_eq!(a["campaign_id"], b["campaign_id"]);
    let (campaigns,): (i64,) = app.fetch_one("SELECT COUNT(*) FROM campaign").await;
    assert_eq!(campaigns, 1);

    let other = csv_for(&campaign_numbers(51));
    let response = send(other).await.unwrap();
    assert_eq!(response.status(), 409, "the same key with another list");
}

#[tokio::test]
async fn campaign_endpoints_answer_bad_input_with_clear_errors() {
    let app = spawn_app().await;
    let get = |path: String, key: Option<&'static str>| {
        let mut request = app.client.get(app.url(&path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    let key = Some(crate::helpers::API_KEY);
    for (path, status, code) in [
        ("/campaigns/nonsense".to_owned(), 404, "not_found"),
        (
            "/campaigns/cmp_01JDZ8K5Q6V0X3M2N4P7R9S1T2".to_owned(),
            404,
            "not_found",
        ),
        ("/campaigns?limit=0".to_owned(), 400, "invalid_field"),
        ("/campaigns?before=x".to_owned(), 400, "invalid_field"),
        ("/opt-outs?limit=5000".to_owned(), 400, "invalid_field"),
        ("/templates/nope".to_owned(), 404, "not_found"),
    ] {
        let response = get(path.clone(), key).await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["code"],
            code,
            "{path}"
        );
    }
    let response = get("/campaigns".to_owned(), None).await.unwrap();
    assert_eq!(response.status(), 401);

    for (body, status, code, field) in [
        (
            json!({"template": "Hi", "phone_numbers": [number("0230")]}),
            400,
            "missing_field",
            "name",
        ),
        (
            json!({"name": "x", "phone_numbers": [number("0230")]}),
            400,
            "missing_field",
            "template",
        ),
        (
            json!({"name": "x", "template": "Hi"}),
            400,
            "missing_field",
            "phone_numbers",
        ),
        (
            json!({"name": "x", "template": "Hi", "phone_numbers": "+14155550230"}),
            400,
            "invalid_field",
            "",
        ),
        (
            json!({"name": "x", "template": "Hi", "phone_numbers": [42]}),
            400,
            "invalid_field",
            "phone_numbers[0]",
        ),
        (
            json!({"name": "x", "template": "Hi", "recipients": [{"variables": {}}]}),
            400,
            "missing_field",
            "recipients[0].phone_number",
        ),
        (
            json!({"name": "x", "template_name": "nope", "phone_numbers": [number("0230")]}),
            400,
            "invalid_field",
            "template_name",
        ),
        (
            json!({"name": "x", "template": "Hi", "priority": "asap", "phone_numbers": [number("0230")]}),
            400,
            "invalid_field",
            "priority",
        ),
        (
            json!({"name": "x", "template": "Hi", "scheduled_at": "tomorrow", "phone_numbers": [number("0230")]}),
            400,
            "invalid_field",
            "scheduled_at",
        ),
        (
            json!({"name": "x", "template": "Hi {{name}", "phone_numbers": [number("0230")]}),
            422,
            "template_error",
            "template",
        ),
    ] {
        let response = app.post_json("/campaigns", &body).await;
        assert_eq!(response.status(), status, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["code"], code, "{body}: {answer}");
        if !field.is_empty() {
            assert_eq!(answer["field"], field, "{body}: {answer}");
        }
    }
    let response = app
        .post_json("/opt-outs", &json!({"phone_number": "12"}))
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap()["code"],
        "invalid_phone_number"
    );
    let response = app
        .client
        .delete(app.url("/opt-outs/%2B14155550231"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "not opted out");
    let (campaigns,): (i64,) = app.fetch_one("SELECT COUNT(*) FROM campaign").await;
    assert_eq!(campaigns, 0, "no refused request left a campaign behind");
}
