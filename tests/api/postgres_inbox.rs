//! Two-way messaging on PostgreSQL (SPEC §1's seed 000 inbox endpoints, §7's keywords): the
//! real `herald` binary on a database of the test's own, driven through the HTTP API as
//! `inbox.rs` drives the SQLite store. Receiving in both body styles, threads and their unread
//! counts, read marking; STOP in its forms, its answer sent once, a queued message to the
//! number failed, START; a provider's retry stored once, also when two API processes receive
//! it at the same moment.

use crate::crash::Herald;
use crate::helpers::{API_KEY, HandoverCounts, eventually, expect_error_shape, number};
use crate::postgres::{TestDatabase, migrate, process_env};
use serde_json::{Value, json};
use sqlx::postgres::PgPool;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Enough for a busy machine building other things.
const PATIENCE: Duration = Duration::from_secs(60);

/// One `herald` process of the test, and an HTTP client for its API.
struct Api {
    process: Herald,
    client: reqwest::Client,
}

/// `herald <args>` on the test's database, with its own mock journal `<run>.log`; the mock
/// reports delivery quickly, and no read receipts.
fn start(
    dir: &Path,
    db: &TestDatabase,
    run: &str,
    args: &[&str],
    extra: &[(&str, &str)],
) -> Herald {
    let journal = journal(dir, run).display().to_string();
    let env = [
        process_env(db, &journal),
        vec![
            ("HERALD__PROVIDERS__MOCK__DELIVER_AFTER_MS", "20"),
            ("HERALD__PROVIDERS__MOCK__SMS_READ_RECEIPTS", "false"),
        ],
        extra.to_vec(),
    ]
    .concat();
    Herald::start_command(dir, run, args, &env)
}

impl Api {
    /// [`start`], once healthy.
    async fn start(
        dir: &Path,
        db: &TestDatabase,
        run: &str,
        args: &[&str],
        extra: &[(&str, &str)],
    ) -> Api {
        let mut process = start(dir, db, run, args, extra);
        let client = reqwest::Client::new();
        process.wait_healthy(&client).await;
        Api { process, client }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/messaging{path}", self.process.base)
    }

    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(API_KEY)
            .json(body)
            .send()
            .await
            .expect("answered")
    }

    /// As `inbox.rs`'s `seed_call`: `params` plain or in a JSON-RPC envelope; the status and
    /// the result (unwrapped from the envelope).
    async fn seed_call(&self, path: &str, params: Value, enveloped: bool) -> (u16, Value) {
        let body = if enveloped {
            json!({"jsonrpc": "2.0", "method": "call", "params": params, "id": 41})
        } else {
            params
        };
        let response = self.post(path, &body).await;
        let status = response.status().as_u16();
        let answer: Value = response.json().await.expect("JSON");
        if !enveloped {
            return (status, answer);
        }
        assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
        assert_eq!(answer["id"], 41, "{answer}");
        let inner = if answer.get("result").is_some() {
            answer["result"].clone()
        } else {
            answer["error"].clone()
        };
        (status, inner)
    }

    /// `/sms/receive` of `text` from `from`; the answer (asserted a success).
    async fn receive_with(&self, params: Value, enveloped: bool) -> Value {
        let (status, answer) = self.seed_call("/sms/receive", params, enveloped).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["success"], true, "{answer}");
        answer
    }

    /// `/sms/receive` of `text` from `from`; the stored message's id.
    async fn receive(&self, from: &str, text: &str, enveloped: bool) -> String {
        let answer = self
            .receive_with(json!({"phone_number": from, "message": text}), enveloped)
            .await;
        answer["message_id"].as_str().expect("an id").to_owned()
    }

    async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(API_KEY)
            .send()
            .await
            .expect("answered");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON"))
    }

    async fn opted_out(&self, phone: &str) -> bool {
        let (status, list) = self.get_json("/opt-outs?limit=1000").await;
        assert_eq!(status, 200, "{list}");
        list["opt_outs"]
            .as_array()
            .expect("a list")
            .iter()
            .any(|o| o["phone_number"] == phone)
    }

    /// The account's thread with `phone`.
    async fn thread_of(&self, phone: &str) -> Value {
        let (status, page) = self.get_json("/threads?limit=200").await;
        assert_eq!(status, 200, "{page}");
        page["threads"]
            .as_array()
            .expect("a list")
            .iter()
            .find(|t| t["phone_number"] == phone)
            .unwrap_or_else(|| panic!("a thread with {phone}: {page}"))
            .clone()
    }

    async fn thread_messages(&self, thread_id: &str) -> Vec<Value> {
        let (status, page) = self
            .get_json(&format!("/threads/{thread_id}/messages?limit=200"))
            .await;
        assert_eq!(status, 200, "{page}");
        page["messages"].as_array().expect("a list").clone()
    }

    async fn send(&self, phone: &str, text: &str) -> reqwest::Response {
        self.post(
            "/send-message/",
            &json!({"phone_number": phone, "message": text}),
        )
        .await
    }

    async fn send_ok(&self, phone: &str, text: &str) -> String {
        let response = self.send(phone, text).await;
        assert_eq!(response.status(), 202, "send to {phone}");
        let body: Value = response.json().await.expect("JSON");
        body["message_id"].as_str().expect("an id").to_owned()
    }

    async fn status(&self, message_id: &str) -> Value {
        let (status, view) = self
            .get_json(&format!("/message/{message_id}/status/"))
            .await;
        assert_eq!(status, 200, "{view}");
        view
    }
}

fn journal(dir: &Path, run: &str) -> PathBuf {
    dir.join(format!("{run}.log"))
}

async fn count(pool: &PgPool, sql: &'static str, bind: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(bind)
        .fetch_one(pool)
        .await
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000s_inbox_flow_on_postgres_plain_and_enveloped() {
    // Arrange: one `herald serve` on a database of the test's own.
    let db = TestDatabase::named("herald_inbox").await;
    let dir = crate::helpers::test_dir();
    migrate(dir.path(), &db);
    let api = Api::start(dir.path(), &db, "api", &["serve"], &[]).await;
    let mut unread_before = 0;
    let mut threads_before = 0;

    for (enveloped, suffix) in [(false, "1"), (true, "2")] {
        let ann = number(&format!("700{suffix}"));
        let bob = number(&format!("701{suffix}"));

        // Act: three messages arrive, two from Ann.
        let first = api.receive(&ann, "Hello!", enveloped).await;
        let second = api.receive(&ann, "Are you there?", enveloped).await;
        api.receive(&bob, "Hi", enveloped).await;

        // Assert: two more threads; Ann's has two unread, its latest text, her number as name.
        let (status, threads) = api.seed_call("/sms/threads", json!({}), enveloped).await;
        assert_eq!(status, 200, "{threads}");
        let threads = threads["threads"].as_array().expect("a list").clone();
        assert_eq!(threads.len(), threads_before + 2, "{threads:?}");
        let ann_thread = threads
            .iter()
            .find(|t| t["phone_number"] == ann)
            .expect("Ann's thread")
            .clone();
        assert_eq!(ann_thread["unread_count"], 2, "{ann_thread}");
        assert_eq!(ann_thread["last_message"], "Are you there?");
        assert_eq!(ann_thread["name"], ann);
        let date = ann_thread["last_message_date"].as_str().expect("a date");
        assert_eq!(date.len(), 19, "YYYY-MM-DD HH:MM:SS: {date}");
        let (_, unread) = api.seed_call("/unread/count", json!({}), enveloped).await;
        assert_eq!(unread["unread_count"], unread_before + 3, "{unread}");
        assert_eq!(
            unread["unread_by_thread"].as_array().expect("a list").len(),
            threads_before + 2,
            "{unread}"
        );

        // Marking counts only what went from unread to read.
        let (_, marked) = api
            .seed_call(
                "/message/read",
                json!({"message_ids": [first, first, "msg_01JDZ8K5Q6V0X3M2N4P7R9S1T2"]}),
                enveloped,
            )
            .await;
        assert_eq!(marked, json!({"success": true, "marked_count": 1}));
        let (_, again) = api
            .seed_call("/message/read", json!({"message_id": first}), enveloped)
            .await;
        assert_eq!(again["marked_count"], 0, "{again}");
        let (_, unread) = api.seed_call("/unread/count", json!({}), enveloped).await;
        assert_eq!(unread["unread_count"], unread_before + 2, "{unread}");
        let ann_unread = unread["unread_by_thread"]
            .as_array()
            .expect("a list")
            .iter()
            .find(|t| t["thread_id"] == ann_thread["id"])
            .expect("Ann's thread still has an unread message")
            .clone();
        assert_eq!(ann_unread["unread_count"], 1, "{ann_unread}");
        assert_eq!(ann_unread["thread_name"], ann);

        // Her thread holds both messages in order, the first read, the second not.
        let id = ann_thread["id"].as_str().expect("a thread id");
        let messages = api.thread_messages(id).await;
        let seen: Vec<(&str, &str, bool)> = messages
            .iter()
            .map(|m| {
                (
                    m["direction"].as_str().expect("a direction"),
                    m["message_id"].as_str().expect("an id"),
                    m["read"].as_bool().expect("read or not"),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("inbound", first.as_str(), true),
                ("inbound", second.as_str(), false)
            ]
        );

        // Bad input: the one error shape, in the style asked.
        let (status, error) = api
            .seed_call(
                "/sms/receive",
                json!({"phone_number": "not a number", "message": "x"}),
                enveloped,
            )
            .await;
        assert_eq!(status, 400, "{error}");
        let code = if enveloped {
            error["data"]["code"].clone()
        } else {
            error["code"].clone()
        };
        assert_eq!(code, "invalid_phone_number", "{error}");
        unread_before += 2;
        threads_before += 2;
    }

    // A reply is linked to the message it answers, and the thread shows both ways.
    let cy = number("7020");
    let sent = api.send_ok(&cy, "Your order shipped").await;
    let reply = api.receive(&cy, "Thanks!", false).await;
    let pool = db.pool().await;
    let answered: Option<String> =
        sqlx::query_scalar("SELECT in_reply_to FROM inbound_message WHERE message_id = $1")
            .bind(&reply)
            .fetch_one(&pool)
            .await
            .expect("the reply");
    assert_eq!(answered.as_deref(), Some(sent.as_str()));
    let thread = api.thread_of(&cy).await;
    let directions: Vec<Value> = api
        .thread_messages(thread["thread_id"].as_str().expect("an id"))
        .await
        .iter()
        .map(|m| json!([m["direction"], m["message_id"]]))
        .collect();
    assert_eq!(
        directions,
        [json!(["outbound", sent]), json!(["inbound", reply])]
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_on_postgres_opts_out_fails_the_queued_message_is_answered_once_and_start_opts_back_in()
 {
    // Arrange: the API process alone (no workers), so what it queues waits.
    let db = TestDatabase::named("herald_inbox").await;
    let dir = crate::helpers::test_dir();
    migrate(dir.path(), &db);
    let api = Api::start(dir.path(), &db, "api", &["serve", "--no-workers"], &[]).await;

    // STOP in its forms opts out; a send to the number is refused at once.
    let forms = [
        "STOP",
        "stop",
        "Stop!",
        "  unsubscribe. ",
        "Cancel",
        "END",
        "quit?",
        "OptOut",
    ];
    for (i, form) in forms.iter().enumerate() {
        let phone = number(&format!("72{i:02}"));
        api.receive(&phone, form, false).await;
        assert!(api.opted_out(&phone).await, "{form:?} opts out");
        let r = api.send(&phone, "promo").await;
        expect_error_shape(r, 400, "recipient_opted_out", form).await;
    }
    // Words that merely contain a keyword are messages.
    let chatty = number("7300");
    api.receive(&chatty, "please stop calling", false).await;
    assert!(!api.opted_out(&chatty).await);

    // Act: a message is queued to Ann; then her STOP arrives, and her gateway delivers it a
    // second time with the same id.
    let ann = number("7400");
    let promo = api.send_ok(&ann, "20% off").await;
    let stop = json!({"phone_number": ann, "message": "STOP", "external_id": "gw-1"});
    let first = api.receive_with(stop.clone(), false).await;
    let again = api.receive_with(stop, true).await;

    // Assert: stored once, the repeat answered with the same message.
    assert_eq!(first["duplicate"], false, "{first}");
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["message_id"], first["message_id"], "{again}");
    let pool = db.pool().await;
    let stored = count(
        &pool,
        "SELECT COUNT(*) FROM inbound_message \
             WHERE provider = 'api' AND provider_message_id LIKE '%:' || $1",
        "gw-1",
    )
    .await;
    assert_eq!(stored, 1, "the repeat stored nothing");
    let thread = api.thread_of(&ann).await;
    assert_eq!(thread["unread_count"], 1, "counted once: {thread}");
    assert!(api.opted_out(&ann).await);
    let r = api.send(&ann, "one more promo").await;
    expect_error_shape(r, 400, "recipient_opted_out", "after STOP").await;
    let to_ann = count(
        &pool,
        "SELECT COUNT(*) FROM message WHERE phone_number = $1",
        &ann,
    )
    .await;
    assert_eq!(to_ann, 2, "the queued promo and one confirmation");

    // A worker starts: the queued promo fails, never sent; the confirmation goes, once.
    let _worker = start(dir.path(), &db, "worker", &["worker"], &[]);
    let thread_id = thread["thread_id"].as_str().expect("an id").to_owned();
    let confirmation = eventually("the confirmation is delivered", PATIENCE, || async {
        let outbound: Vec<Value> = api
            .thread_messages(&thread_id)
            .await
            .into_iter()
            .filter(|m| m["direction"] == "outbound" && m["message_id"] != promo.as_str())
            .collect();
        match outbound.as_slice() {
            [one] if one["status"] == "delivered" => Some(one.clone()),
            _ => None,
        }
    })
    .await;
    assert!(
        confirmation["body"]
            .as_str()
            .expect("a body")
            .contains("unsubscribed"),
        "{confirmation}"
    );
    let view = api.status(&promo).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["error_code"], "recipient_opted_out", "{view}");
    let handed = HandoverCounts::from_journal(&journal(dir.path(), "worker"));
    let confirmation_id = confirmation["message_id"].as_str().expect("an id");
    assert_eq!(handed.accepted.get(confirmation_id), Some(&1), "{handed:?}");
    assert_eq!(handed.accepted.get(&promo), None, "{handed:?}");
    let messages = api.thread_messages(&thread_id).await;
    assert_eq!(
        messages
            .iter()
            .find(|m| m["direction"] == "inbound")
            .map(|m| m["keyword"].clone()),
        Some(json!("stop")),
        "{messages:?}"
    );

    // START opts back in; sends go again.
    api.receive(&ann, "Start", false).await;
    assert!(!api.opted_out(&ann).await);
    assert_eq!(api.send(&ann, "welcome back").await.status(), 202);

    // HELP is answered with the account's own text, and opts nobody out.
    let own = "Acme: help at acme.example/help. Reply STOP to opt out.";
    let r = api
        .client
        .put(api.url("/keyword-replies"))
        .bearer_auth(API_KEY)
        .json(&json!({"help_reply": own}))
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 200);
    let (_, replies) = api.get_json("/keyword-replies").await;
    assert_eq!(replies["help_reply"], own, "{replies}");
    assert_eq!(replies["help_reply_own"], true, "{replies}");
    let helped = number("7401");
    api.receive(&helped, "help", false).await;
    assert!(!api.opted_out(&helped).await);
    let help_thread = api.thread_of(&helped).await["thread_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let answer = eventually("the help text is sent", PATIENCE, || async {
        api.thread_messages(&help_thread)
            .await
            .into_iter()
            .find(|m| m["direction"] == "outbound")
    })
    .await;
    assert_eq!(answer["body"], own, "{answer}");

    // The opt-out list's own endpoints.
    let bob = number("7402");
    let r = api.post("/opt-outs", &json!({"phone_number": bob})).await;
    assert_eq!(r.status(), 201);
    let r = api.post("/opt-outs", &json!({"phone_number": bob})).await;
    assert_eq!(r.status(), 200, "already opted out");
    expect_error_shape(
        api.send(&bob, "hi").await,
        400,
        "recipient_opted_out",
        "api",
    )
    .await;
    let r = api
        .client
        .delete(api.url(&format!("/opt-outs/{}", bob.replace('+', "%2B"))))
        .bearer_auth(API_KEY)
        .send()
        .await
        .expect("answered");
    assert_eq!(r.status(), 200);
    assert!(!api.opted_out(&bob).await);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_processes_receiving_the_same_messages_at_once_store_each_once() {
    // Arrange: two API processes on one database.
    let db = TestDatabase::named("herald_inbox").await;
    let dir = crate::helpers::test_dir();
    migrate(dir.path(), &db);
    let mut apis = Vec::new();
    for i in 0..2 {
        let run = format!("api-{i}");
        apis.push(Api::start(dir.path(), &db, &run, &["serve", "--no-workers"], &[]).await);
    }
    // Ten messages from ten numbers, every third a STOP, each delivered eight times over
    // both processes at once (a provider retrying while its first delivery is stored).
    let messages: Vec<(String, String, &str)> = (0..10)
        .map(|i| {
            let text = if i % 3 == 0 { "STOP" } else { "hello" };
            (number(&format!("75{i:02}")), format!("gw-race-{i}"), text)
        })
        .collect();
    let copies = 8;

    // Act
    let answers = futures::future::join_all(
        (0..copies)
            .flat_map(|copy| messages.iter().map(move |m| (copy, m)))
            .map(|(copy, (phone, reference, text))| {
                let api = &apis[copy % 2];
                let body =
                    json!({"phone_number": phone, "message": text, "external_id": reference});
                async move {
                    let response = api.post("/sms/receive", &body).await;
                    let status = response.status().as_u16();
                    let answer: Value = response.json().await.expect("JSON");
                    (reference.clone(), status, answer)
                }
            }),
    )
    .await;

    // Assert: every copy answered 200; per message one id, one first answer, the rest repeats.
    let mut ids: HashMap<&str, HashSet<String>> = HashMap::new();
    let mut firsts: HashMap<&str, usize> = HashMap::new();
    for (reference, status, answer) in &answers {
        assert_eq!(*status, 200, "{reference}: {answer}");
        ids.entry(reference)
            .or_default()
            .insert(answer["message_id"].as_str().expect("an id").to_owned());
        if answer["duplicate"] == false {
            *firsts.entry(reference).or_default() += 1;
        }
    }
    let pool = db.pool().await;
    for (phone, reference, text) in &messages {
        assert_eq!(ids[reference.as_str()].len(), 1, "{reference}: {ids:?}");
        assert_eq!(
            firsts.get(reference.as_str()),
            Some(&1),
            "{reference}: {firsts:?}"
        );
        let stored = count(
            &pool,
            "SELECT COUNT(*) FROM inbound_message \
             WHERE provider = 'api' AND provider_message_id LIKE '%:' || $1",
            reference,
        )
        .await;
        assert_eq!(stored, 1, "{reference} stored once");
        let thread = apis[0].thread_of(phone).await;
        assert_eq!(
            thread["unread_count"], 1,
            "{reference} counted once: {thread}"
        );
        // A STOP opted out and queued one confirmation; other messages queued nothing.
        let queued = count(
            &pool,
            "SELECT COUNT(*) FROM message WHERE phone_number = $1",
            phone,
        )
        .await;
        let stop = *text == "STOP";
        assert_eq!(queued, i64::from(stop), "{reference}: {text}");
        assert_eq!(apis[1].opted_out(phone).await, stop, "{reference}: {text}");
    }
    let events: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM event WHERE kind = 'message.inbound'")
            .fetch_one(&pool)
            .await
            .expect("a count");
    assert_eq!(events, 10, "one event per message stored");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whatsapp_message_on_postgres_opens_the_24_hour_window() {
    // Arrange: WhatsApp through Meta's Cloud API (nothing is sent: no workers).
    let db = TestDatabase::named("herald_inbox").await;
    let dir = crate::helpers::test_dir();
    migrate(dir.path(), &db);
    let api = Api::start(
        dir.path(),
        &db,
        "api",
        &["serve", "--no-workers"],
        &[
            ("HERALD__PROVIDERS__WHATSAPP", "whatsapp_cloud"),
            (
                "HERALD__PROVIDERS__WHATSAPP_CLOUD__BASE_URL",
                "http://127.0.0.1:9",
            ),
            (
                "HERALD__PROVIDERS__WHATSAPP_CLOUD__PHONE_NUMBER_ID",
                "\"555000111\"",
            ),
            ("HERALD__PROVIDERS__WHATSAPP_CLOUD__ACCESS_TOKEN", "token"),
            ("HERALD__PROVIDERS__WHATSAPP_CLOUD__APP_SECRET", "secret"),
            ("HERALD__PROVIDERS__WHATSAPP_CLOUD__VERIFY_TOKEN", "verify"),
        ],
    )
    .await;
    let ann = number("7601");
    let free =
        json!({"phone_number": ann, "message": "Your table is ready", "channel": "whatsapp"});
    let r = api.post("/send-message/", &free).await;
    expect_error_shape(r, 422, "whatsapp_window_closed", "never wrote").await;
    // An SMS from her opens nothing on WhatsApp.
    api.receive(&ann, "hi by sms", false).await;
    let r = api.post("/send-message/", &free).await;
    expect_error_shape(r, 422, "whatsapp_window_closed", "wrote by SMS").await;

    // Act
    api.receive_with(
        json!({"phone_number": ann, "message": "hi", "channel": "whatsapp"}),
        false,
    )
    .await;

    // Assert
    assert_eq!(api.post("/send-message/", &free).await.status(), 202);
}
