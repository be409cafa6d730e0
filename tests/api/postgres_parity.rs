//! What was ported to PostgreSQL answers as it does on SQLite: accounts' own provider
//! credentials (`/providers/{provider}`, and the webhooks their secrets check) and message
//! search (`GET /messages`, its filters and its `before` cursor, and the Twilio-compatible
//! fetch). Each test runs the real `herald serve` on a database of its own (PostgreSQL at
//! `HERALD_TEST_POSTGRES`, which `.ci/run` starts when it is down) and talks to it over HTTP.

use crate::crash::Herald;
use crate::helpers::{API_KEY, eventually, expect_error_shape, number, numbers_from, send_bulk_to};
use crate::postgres::TestDatabase;
use crate::search::ids;
use crate::twilio_stub::{PUBLIC_URL, sign_with};
use base64::Engine;
use herald::providers::twilio::STATUS_PATH;
use serde_json::{Value, json};
use sqlx::postgres::PgPool;
use std::path::Path;
use std::time::Duration;

const LANES: [&str; 4] = ["urgent", "high", "normal", "low"];
const OWN_SID: &str = "AC99999999999999999999999999999999";
const OWN_TOKEN: &str = "own-auth-token-1c9e";
const NEW_TOKEN: &str = "own-auth-token-replaced-77d0";
const OWN_FROM: &str = "+15005550006";
const NEW_FROM: &str = "+15005550007";
const OWN_NUMBER_ID: &str = "555000111";
const OWN_VERIFY_TOKEN: &str = "own-verify-token-60aa";

/// `herald <args>` on the test's database: mock providers with short receipt delays, a
/// `credentials.key`, and a public URL for Twilio's callbacks.
async fn serve(dir: &Path, db: &TestDatabase, args: &[&str], extra: &[(&str, &str)]) -> Herald {
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let env = [
        vec![
            ("HERALD__DATABASE__URL", db.url.as_str()),
            ("HERALD__DATABASE__MAX_CONNECTIONS", "8"),
            ("HERALD__CREDENTIALS__KEY", key.as_str()),
            ("HERALD__SERVER__PUBLIC_URL", PUBLIC_URL),
            ("HERALD__PROVIDERS__MOCK__DELIVER_AFTER_MS", "20"),
            ("HERALD__PROVIDERS__MOCK__READ_AFTER_MS", "20"),
        ],
        extra.to_vec(),
    ]
    .concat();
    let mut herald = Herald::start_command(dir, "pg", args, &env);
    herald.wait_healthy(&reqwest::Client::new()).await;
    herald
}

/// `herald accounts create <name>` on the test's database, as an operator would; returns
/// the account id and its API key.
fn create_account(dir: &Path, db: &TestDatabase, name: &str) -> (String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["accounts", "create", name, "--balance", "100"])
        .current_dir(dir)
        .env("HERALD__DATABASE__URL", &db.url)
        .output()
        .expect("herald accounts create runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let id = stdout
        .split_once("(acc_")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(id, _)| format!("acc_{id}"))
        .expect("the account id is printed");
    let key = stdout
        .lines()
        .last()
        .expect("the key is printed")
        .to_owned();
    (id, key)
}

fn twilio_body(auth_token: &str, from: &str, per_second: u32) -> Value {
    json!({
        "account_sid": OWN_SID,
        "auth_token": auth_token,
        "senders": [{"from": from, "per_second": per_second}],
    })
}

async fn put(base: &str, key: &str, provider: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .put(format!("{base}/api/messaging/providers/{provider}"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("the request is sent")
}

async fn get(base: &str, key: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}/api/messaging{path}"))
        .bearer_auth(key)
        .send()
        .await
        .expect("the request is sent")
}

async fn get_json(base: &str, key: &str, path: &str) -> Value {
    let response = get(base, key, path).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("JSON")
}

async fn delete(base: &str, key: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .delete(format!("{base}/api/messaging{path}"))
        .bearer_auth(key)
        .send()
        .await
        .expect("the request is sent")
}

/// A Twilio status callback for `sid` naming the Twilio account `OWN_SID`, signed with
/// `auth_token`.
async fn twilio_callback(base: &str, auth_token: &str, sid: &str) -> reqwest::Response {
    let params = [
        ("AccountSid", OWN_SID),
        ("MessageSid", sid),
        ("MessageStatus", "delivered"),
    ];
    reqwest::Client::new()
        .post(format!("{base}{STATUS_PATH}"))
        .header("X-Twilio-Signature", sign_with(auth_token, &params))
        .form(&params)
        .send()
        .await
        .expect("the callback is sent")
}

async fn credential_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM provider_credential")
        .fetch_one(pool)
        .await
        .expect("a count")
}

/// Receipts held for `sid`: a callback whose signature held, for no message of ours.
async fn held_receipts(pool: &PgPool, sid: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM pending_receipt WHERE provider_message_id = $1")
        .bind(sid)
        .fetch_one(pool)
        .await
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_saves_replaces_and_deletes_its_own_provider_credentials_on_postgres() {
    // Arrange: herald on PostgreSQL with a credentials.key; a second account.
    let db = TestDatabase::named("herald_parity").await;
    let dir = crate::helpers::test_dir();
    let herald = serve(dir.path(), &db, &["serve"], &[]).await;
    let base = herald.base.as_str();
    let (_, other) = create_account(dir.path(), &db, "other");
    let pool = db.pool().await;

    // Act: save Twilio credentials.
    let response = put(
        base,
        API_KEY,
        "twilio",
        &twilio_body(OWN_TOKEN, OWN_FROM, 10),
    )
    .await;

    // Assert: answered without the token; read back the same, by this account only.
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("a body");
    assert!(!text.contains(OWN_TOKEN), "{text}");
    let saved: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(saved["provider"], "twilio");
    assert_eq!(saved["channel"], "sms");
    assert_eq!(saved["account_sid"], OWN_SID);
    assert_eq!(
        saved["senders"],
        json!([{"from": OWN_FROM, "per_second": 10}])
    );
    assert_eq!(saved["secrets_set"], json!(["auth_token"]));
    assert_eq!(get_json(base, API_KEY, "/providers/twilio").await, saved);
    assert_eq!(
        get_json(base, API_KEY, "/providers").await["providers"],
        json!([saved])
    );
    expect_error_shape(
        get(base, &other, "/providers/twilio").await,
        404,
        "not_found",
        "another account's credentials",
    )
    .await;
    assert_eq!(
        get_json(base, &other, "/providers").await["providers"],
        json!([])
    );
    // Sealed at rest: neither column holds the token.
    let (public, sealed): (String, Vec<u8>) =
        sqlx::query_as("SELECT public, sealed FROM provider_credential")
            .fetch_one(&pool)
            .await
            .expect("one row");
    assert!(!public.contains(OWN_TOKEN), "{public}");
    assert!(
        !sealed
            .windows(OWN_TOKEN.len())
            .any(|w| w == OWN_TOKEN.as_bytes())
    );

    // Another account cannot take the same Twilio account: nothing is written.
    let taken = put(base, &other, "twilio", &twilio_body("theirs", OWN_FROM, 1)).await;
    expect_error_shape(taken, 409, "invalid_state", "a Twilio account in use").await;
    assert_eq!(credential_rows(&pool).await, 1);
    assert_eq!(get_json(base, API_KEY, "/providers/twilio").await, saved);

    // Its callbacks are found by the Twilio account they name and checked with its token.
    let sid = "SM00000000000000000000000000000001";
    let forged = twilio_callback(base, NEW_TOKEN, sid).await;
    expect_error_shape(
        forged,
        403,
        "invalid_signature",
        "signed with another token",
    )
    .await;
    assert_eq!(twilio_callback(base, OWN_TOKEN, sid).await.status(), 200);
    assert_eq!(held_receipts(&pool, sid).await, 1);

    // Replaced: the same row, new secret and senders, created_at kept.
    let response = put(
        base,
        API_KEY,
        "twilio",
        &twilio_body(NEW_TOKEN, NEW_FROM, 3),
    )
    .await;
    assert_eq!(response.status(), 200);
    let replaced: Value = response.json().await.expect("JSON");
    assert_eq!(
        replaced["senders"],
        json!([{"from": NEW_FROM, "per_second": 3}])
    );
    assert_eq!(replaced["created_at"], saved["created_at"]);
    assert!(
        replaced["updated_at"].as_str() >= saved["updated_at"].as_str(),
        "{replaced} after {saved}"
    );
    assert_eq!(get_json(base, API_KEY, "/providers/twilio").await, replaced);
    assert_eq!(credential_rows(&pool).await, 1);
    let sid = "SM00000000000000000000000000000002";
    let stale = twilio_callback(base, OWN_TOKEN, sid).await;
    expect_error_shape(stale, 403, "invalid_signature", "signed with the old token").await;
    assert_eq!(twilio_callback(base, NEW_TOKEN, sid).await.status(), 200);

    // WhatsApp beside it: its verify token is known by its hash.
    let whatsapp = json!({
        "phone_number_id": OWN_NUMBER_ID,
        "access_token": "own-wa-access-token-3b7d",
        "app_secret": "own-app-secret-8e21",
        "verify_token": OWN_VERIFY_TOKEN,
    });
    assert_eq!(
        put(base, API_KEY, "whatsapp_cloud", &whatsapp)
            .await
            .status(),
        200
    );
    let verify = |token: &'static str| async move {
        reqwest::Client::new()
            .get(format!("{base}/webhooks/whatsapp"))
            .query(&[
                ("hub.mode", "subscribe"),
                ("hub.verify_token", token),
                ("hub.challenge", "1158201444"),
            ])
            .send()
            .await
            .expect("the request is sent")
    };
    let answered = verify(OWN_VERIFY_TOKEN).await;
    assert_eq!(answered.status(), 200);
    assert_eq!(answered.text().await.expect("a body"), "1158201444");
    expect_error_shape(
        verify("not-a-token").await,
        403,
        "invalid_signature",
        "an unknown verify token",
    )
    .await;
    let listed = get_json(base, API_KEY, "/providers").await;
    let providers: Vec<&str> = listed["providers"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| p["provider"].as_str().expect("a name"))
        .collect();
    assert_eq!(providers, ["twilio", "whatsapp_cloud"]);

    // Deleted: gone for this account, its callbacks no longer checked with its token, and
    // the Twilio account free for another.
    let removed = delete(base, API_KEY, "/providers/twilio").await;
    assert_eq!(removed.status(), 200);
    assert_eq!(
        removed.json::<Value>().await.expect("JSON"),
        json!({"success": true, "provider": "twilio", "removed": true})
    );
    expect_error_shape(
        get(base, API_KEY, "/providers/twilio").await,
        404,
        "not_found",
        "deleted credentials",
    )
    .await;
    expect_error_shape(
        delete(base, API_KEY, "/providers/twilio").await,
        404,
        "not_found",
        "deleted twice",
    )
    .await;
    let after = twilio_callback(base, NEW_TOKEN, "SM00000000000000000000000000000003").await;
    expect_error_shape(after, 403, "invalid_signature", "credentials deleted").await;
    assert_eq!(
        get_json(base, API_KEY, "/providers").await["providers"][0]["provider"],
        "whatsapp_cloud"
    );
    let theirs = put(base, &other, "twilio", &twilio_body("theirs", OWN_FROM, 1)).await;
    assert_eq!(theirs.status(), 200);
    expect_error_shape(
        get(base, API_KEY, "/providers/twilio").await,
        404,
        "not_found",
        "now another account's",
    )
    .await;
    assert_eq!(credential_rows(&pool).await, 2);
    pool.close().await;
    drop(herald);
}

async fn search(base: &str, key: &str, query: &[(&str, &str)]) -> Value {
    let response = reqwest::Client::new()
        .get(format!("{base}/api/messaging/messages"))
        .bearer_auth(key)
        .query(query)
        .send()
        .await
        .expect("the request is sent");
    assert_eq!(response.status(), 200, "{query:?}");
    response.json().await.expect("JSON")
}

/// Follows `next_before` from the first page of `query`; the pages' ids, in order.
async fn pages(base: &str, key: &str, query: &[(&str, &str)]) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut query: Vec<(&str, &str)> = query.to_vec();
        if let Some(cursor) = &before {
            query.push(("before", cursor));
        }
        let page = search(base, key, &query).await;
        pages.push(ids(&page));
        match page["next_before"].as_str() {
            Some(cursor) => before = Some(cursor.to_owned()),
            None => return pages,
        }
        assert!(pages.len() < 50, "paging ends: {pages:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_on_postgres_finds_by_number_and_status_and_pages_with_before() {
    // Arrange: 36 messages to distinct numbers on four priorities and both channels, in
    // three requests; three to one shared number (two SMS, one WhatsApp); one that ends
    // undelivered; another account's message to the shared number. All delivered and read.
    let db = TestDatabase::named("herald_parity").await;
    let dir = crate::helpers::test_dir();
    let herald = serve(dir.path(), &db, &["serve"], &[]).await;
    let base = herald.base.as_str();
    let (other_id, other) = create_account(dir.path(), &db, "other");
    let client = reqwest::Client::new();
    let mut items: Vec<Value> = numbers_from(1000, 36)
        .iter()
        .enumerate()
        .map(|(i, n)| {
            json!({
                "phone_number": n,
                "message": format!("m{i} to {n}"),
                "priority": LANES[i % 4],
                "channel": if i % 3 == 0 { "whatsapp" } else { "sms" },
            })
        })
        .collect();
    let shared = number("5555");
    items.extend([
        json!({"phone_number": shared, "message": "a1", "priority": "normal", "channel": "sms"}),
        json!({"phone_number": shared, "message": "a2", "priority": "high", "channel": "sms"}),
        json!({"phone_number": shared, "message": "w1", "priority": "low", "channel": "whatsapp"}),
        json!({"phone_number": number("0004"), "message": "u1", "priority": "urgent",
               "channel": "sms", "campaign_id": "autumn"}),
    ]);
    let mut ours = Vec::new();
    for chunk in [&items[..12], &items[12..24], &items[24..36], &items[36..]] {
        ours.extend(send_bulk_to(&client, base, API_KEY, chunk).await);
    }
    let to_shared = ours[36..39].to_vec();
    let undelivered = ours[39].clone();
    let theirs = send_bulk_to(
        &client,
        base,
        &other,
        &[json!({"phone_number": shared, "message": "theirs"})],
    )
    .await
    .remove(0);
    let pool = db.pool().await;
    eventually(
        "every message read or undelivered",
        Duration::from_secs(60),
        || async {
            let open: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM message WHERE status NOT IN ('read', 'undelivered')",
            )
            .fetch_one(&pool)
            .await
            .ok()?;
            (open == 0).then_some(())
        },
    )
    .await;
    let newest_first: Vec<String> = ours.iter().rev().cloned().collect();

    // Act and assert: everything, seven at a time: each message once, newest first, as sent.
    let all = pages(base, API_KEY, &[("limit", "7")]).await;
    assert_eq!(
        all.iter().map(Vec::len).collect::<Vec<_>>(),
        [7, 7, 7, 7, 7, 5]
    );
    assert_eq!(all.concat(), newest_first);
    let listed = search(base, API_KEY, &[("limit", "200")]).await;
    assert_eq!(ids(&listed), newest_first);
    assert!(listed["next_before"].is_null(), "{listed}");
    for (m, (id, item)) in listed["messages"]
        .as_array()
        .expect("a list")
        .iter()
        .zip(ours.iter().zip(&items).rev())
    {
        assert_eq!(m["message_id"], id.as_str());
        for field in ["phone_number", "message", "priority", "channel"] {
            assert_eq!(m[field], item[field], "{field} of {m}");
        }
        let expected = if *id == undelivered {
            "undelivered"
        } else {
            "read"
        };
        assert_eq!(m["status"], expected, "{m}");
    }

    // By number (also written locally with its region), not the other account's; with a
    // channel, checked row by row.
    let by_number = search(base, API_KEY, &[("phone_number", &shared)]).await;
    let expected: Vec<String> = to_shared.iter().rev().cloned().collect();
    assert_eq!(ids(&by_number), expected);
    assert!(by_number["next_before"].is_null(), "{by_number}");
    let local = shared.trim_start_matches("+1");
    assert_eq!(
        ids(&search(base, API_KEY, &[("phone_number", local), ("country", "US")]).await),
        expected
    );
    assert_eq!(
        ids(&search(
            base,
            API_KEY,
            &[("phone_number", &shared), ("channel", "whatsapp")]
        )
        .await),
        vec![to_shared[2].clone()]
    );
    assert_eq!(
        ids(&search(base, &other, &[("phone_number", &shared)]).await),
        vec![theirs.clone()]
    );

    // By status: the rare one alone, with its details; the common one page after page.
    let page = search(base, API_KEY, &[("status", "undelivered")]).await;
    assert_eq!(ids(&page), vec![undelivered.clone()]);
    assert!(page["next_before"].is_null(), "{page}");
    assert_eq!(page["messages"][0]["phone_number"], number("0004"));
    assert_eq!(page["messages"][0]["campaign_id"], "autumn");
    assert_eq!(page["messages"][0]["message"], "u1");
    assert!(page["messages"][0]["error_code"].is_string(), "{page}");
    assert!(
        ids(&search(
            base,
            API_KEY,
            &[("status", "undelivered"), ("channel", "whatsapp")]
        )
        .await)
        .is_empty(),
        "both filters must hold"
    );
    let read = pages(base, API_KEY, &[("status", "read"), ("limit", "10")]).await;
    assert_eq!(
        read.iter().map(Vec::len).collect::<Vec<_>>(),
        [10, 10, 10, 9]
    );
    let read_expected: Vec<String> = newest_first
        .iter()
        .filter(|id| **id != undelivered)
        .cloned()
        .collect();
    assert_eq!(read.concat(), read_expected);
    let whatsapp_expected: Vec<String> = ours
        .iter()
        .zip(&items)
        .rev()
        .filter(|(_, item)| item["channel"] == "whatsapp")
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(whatsapp_expected.len(), 13);
    let whatsapp = pages(base, API_KEY, &[("channel", "whatsapp"), ("limit", "5")]).await;
    assert_eq!(whatsapp.concat(), whatsapp_expected);
    // The first page's cursor, given once: exactly the older ones.
    let first = search(base, API_KEY, &[("limit", "7")]).await;
    let cursor = first["next_before"].as_str().expect("more pages");
    let older = search(base, API_KEY, &[("before", cursor), ("limit", "200")]).await;
    assert_eq!(ids(&older), newest_first[7..].to_vec());

    // A time window: everything so far is before now, nothing after.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let later = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(
        ids(&search(base, API_KEY, &[("created_to", &now), ("limit", "200")]).await),
        newest_first
    );
    assert!(ids(&search(base, API_KEY, &[("created_from", &later)]).await).is_empty());

    // One message as the Twilio-compatible API fetches it: only its own account's.
    let basic = |id: &str, key: &str| {
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{key}"));
        format!("Basic {pair}")
    };
    let fetch = |sid: String| {
        client
            .get(format!(
                "{base}/2010-04-01/Accounts/{other_id}/Messages/{sid}.json"
            ))
            .header("Authorization", basic(&other_id, &other))
            .send()
    };
    let fetched = fetch(theirs.clone()).await.expect("the request is sent");
    assert_eq!(fetched.status(), 200);
    let resource: Value = fetched.json().await.expect("JSON");
    assert_eq!(resource["sid"], theirs.as_str());
    assert_eq!(resource["to"], shared.as_str());
    assert_eq!(resource["body"], "theirs");
    assert_eq!(resource["status"], "read");
    let not_theirs = fetch(to_shared[0].clone())
        .await
        .expect("the request is sent");
    assert_eq!(not_theirs.status(), 404);

    // Pages hold still while new messages arrive: five more before each page.
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    let mut round = 0;
    loop {
        round += 1;
        let fresh: Vec<Value> = numbers_from(2000 + round * 10, 5)
            .iter()
            .map(|n| json!({"phone_number": n, "message": "new"}))
            .collect();
        send_bulk_to(&client, base, API_KEY, &fresh).await;
        let mut query = vec![("limit", "7".to_owned())];
        if let Some(cursor) = &before {
            query.push(("before", cursor.clone()));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = search(base, API_KEY, &query).await;
        seen.extend(ids(&page));
        match page["next_before"].as_str() {
            Some(cursor) => before = Some(cursor.to_owned()),
            None => break,
        }
        assert!(round < 20, "paging ends");
    }
    let older: Vec<String> = seen
        .iter()
        .filter(|id| ours.contains(id))
        .cloned()
        .collect();
    assert_eq!(older, newest_first, "all 40, none skipped, newest first");
    assert_eq!(
        seen.len(),
        45,
        "the 40 and the 5 sent before the first page"
    );
    pool.close().await;
    drop(herald);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rare_status_on_postgres_gives_short_pages_that_go_on_until_it_is_found() {
    // Arrange: a page's window and 100 more messages waiting (no workers), the oldest of
    // them failed: a status behind more messages than one page examines.
    let db = TestDatabase::named("herald_parity").await;
    let dir = crate::helpers::test_dir();
    let herald = serve(
        dir.path(),
        &db,
        &["serve", "--no-workers"],
        &[("HERALD__MESSAGING__MAX_MESSAGES_PER_BATCH", "1000")],
    )
    .await;
    let base = herald.base.as_str();
    let client = reqwest::Client::new();
    let total = herald::store::search::SCAN_LIMIT + 100;
    let mut all = Vec::new();
    for first in (0..total).step_by(1000) {
        let items: Vec<Value> = (first..total.min(first + 1000))
            .map(|i| json!({"phone_number": format!("+1415{:07}", 2_000_000 + i), "message": "scan"}))
            .collect();
        all.extend(send_bulk_to(&client, base, API_KEY, &items).await);
    }
    assert_eq!(all.len(), total);
    let oldest = all.first().expect("the first message").clone();
    let pool = db.pool().await;
    sqlx::query("UPDATE message SET status = 'failed', billing = 'released' WHERE message_id = $1")
        .bind(&oldest)
        .execute(&pool)
        .await
        .expect("one message failed");

    // Act: follow next_before from the first page.
    let found = pages(base, API_KEY, &[("status", "failed")]).await;

    // Assert: the first page examined its window and came back empty with a cursor; the
    // next found the failed message; nothing else matched.
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].is_empty(), "{found:?}");
    assert_eq!(found[1], vec![oldest]);
    // A filter the indexes serve alone is not bounded: a full page of the newest; and a
    // common status gives exactly the newest that have it, in order, page after page.
    let newest = search(base, API_KEY, &[("limit", "200")]).await;
    let newest_ids: Vec<String> = all.iter().rev().take(200).cloned().collect();
    assert_eq!(ids(&newest), newest_ids);
    let queued = search(base, API_KEY, &[("limit", "200"), ("status", "queued")]).await;
    assert_eq!(ids(&queued), newest_ids);
    let next = queued["next_before"].as_str().expect("more pages");
    let older = search(base, API_KEY, &[("status", "queued"), ("before", next)]).await;
    let older_all = search(base, API_KEY, &[("before", next)]).await;
    assert_eq!(ids(&older), ids(&older_all));
    assert_eq!(ids(&older).len(), 50);
    pool.close().await;
    drop(herald);
}
