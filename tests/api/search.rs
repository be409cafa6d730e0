//! Message search (`GET /messages`) and a campaign's CSV export.

use crate::helpers::{
    TestApp, bulk_items, expect_error_shape, number, numbers_from, send_bulk_to, spawn_app,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;

async fn search_as(app: &TestApp, key: &str, query: &[(&str, &str)]) -> Value {
    let response = app
        .client
        .get(app.url("/messages"))
        .bearer_auth(key)
        .query(query)
        .send()
        .await
        .expect("the request is sent");
    assert_eq!(response.status(), 200, "{query:?}");
    response.json().await.expect("JSON")
}

/// The message ids of a search page, in its order.
pub(crate) fn ids(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|m| m["message_id"].as_str().expect("an id").to_owned())
        .collect()
}

fn id_set(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

#[tokio::test]
async fn filters_combine_and_another_accounts_messages_never_appear() {
    // Arrange: our messages to three numbers on two channels, two campaign tags, one that
    // ends undelivered; another account sends to the same number.
    let app = spawn_app().await;
    let other_key = app.create_account("other", "100", 1_000_000).await;
    let shared = number("5555");
    let undelivered = number("0004");
    let send = async |key: &str, items: Vec<Value>| {
        send_bulk_to(&app.client, &app.address, key, &items).await
    };
    let sms_a = send(
        &app.api_key,
        vec![
            json!({"phone_number": shared, "message": "a1", "campaign_id": "spring"}),
            json!({"phone_number": shared, "message": "a2", "campaign_id": "spring"}),
            json!({"phone_number": undelivered, "message": "a3", "campaign_id": "autumn"}),
        ],
    )
    .await;
    let whatsapp = send(
        &app.api_key,
        vec![
            json!({"phone_number": shared, "message": "w1", "channel": "whatsapp",
            "campaign_id": "spring"}),
        ],
    )
    .await;
    let theirs = send(
        &other_key,
        vec![json!({"phone_number": shared, "message": "theirs", "campaign_id": "spring"})],
    )
    .await;
    app.wait_for_status(&sms_a[2], "undelivered").await;
    let key = app.api_key.clone();

    // Act and assert: each filter alone, then together.
    let by_number = ids(&search_as(&app, &key, &[("phone_number", &shared)]).await);
    assert_eq!(
        id_set(&by_number),
        id_set(&[sms_a[0].clone(), sms_a[1].clone(), whatsapp[0].clone()]),
        "our three messages to the number, not the other account's"
    );
    // Written as a local number with its region, it is the same number.
    let local = shared.trim_start_matches("+1");
    let by_local = ids(&search_as(&app, &key, &[("phone_number", local), ("country", "US")]).await);
    assert_eq!(id_set(&by_local), id_set(&by_number));

    let spring_sms =
        ids(&search_as(&app, &key, &[("campaign_id", "spring"), ("channel", "sms")]).await);
    assert_eq!(id_set(&spring_sms), id_set(&sms_a[..2]));

    let page = search_as(&app, &key, &[("status", "undelivered")]).await;
    assert_eq!(ids(&page), vec![sms_a[2].clone()]);
    assert_eq!(page["messages"][0]["phone_number"], undelivered);
    assert_eq!(page["messages"][0]["campaign_id"], "autumn");
    assert_eq!(page["messages"][0]["message"], "a3");
    assert!(page["messages"][0]["error_code"].is_string(), "{page}");
    assert!(
        ids(&search_as(
            &app,
            &key,
            &[("status", "undelivered"), ("campaign_id", "spring")]
        )
        .await)
        .is_empty(),
        "both filters must hold"
    );

    // A time window: everything so far is before now, nothing after.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let later = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    assert_eq!(
        ids(&search_as(&app, &key, &[("created_to", &now)]).await).len(),
        4
    );
    assert!(ids(&search_as(&app, &key, &[("created_from", &later)]).await).is_empty());

    // The other account sees only its own.
    let theirs_found = ids(&search_as(&app, &other_key, &[("campaign_id", "spring")]).await);
    assert_eq!(theirs_found, theirs);
    app.stop().await;
}

#[tokio::test]
async fn pages_never_repeat_or_skip_a_message_while_new_ones_arrive() {
    // Arrange: 30 messages.
    let app = spawn_app().await;
    let first: Vec<String> = app
        .send_bulk_ok(&bulk_items(&numbers_from(1000, 30), "normal", "page"))
        .await;
    let key = app.api_key.clone();

    // Act: page through 7 at a time, sending 5 more before each page.
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    let mut round = 0;
    loop {
        round += 1;
        app.send_bulk_ok(&bulk_items(
            &numbers_from(2000 + round * 10, 5),
            "normal",
            "new",
        ))
        .await;
        let mut query = vec![("limit", "7".to_owned())];
        if let Some(cursor) = &before {
            query.push(("before", cursor.clone()));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = search_as(&app, &key, &query).await;
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 7);
        seen.extend(page_ids);
        match page["next_before"].as_str() {
            Some(cursor) => before = Some(cursor.to_owned()),
            None => break,
        }
        assert!(round < 20, "paging ends");
    }

    // Assert: the first page began after the first 5 new ones; after it, exactly the 30
    // older messages, each once, newest first.
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no message twice: {seen:?}");
    let older: Vec<String> = seen
        .iter()
        .filter(|id| first.contains(id))
        .cloned()
        .collect();
    let mut expected = first.clone();
    expected.reverse();
    assert_eq!(older, expected, "all 30, none skipped, newest first");
    assert_eq!(
        seen.len(),
        35,
        "the 30 and the 5 sent before the first page"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_search_input_is_a_400_in_the_error_shape() {
    let app = spawn_app().await;
    for (query, code) in [
        (vec![("status", "lost")], "invalid_field"),
        (vec![("channel", "fax")], "invalid_field"),
        (vec![("before", "yesterday")], "invalid_field"),
        (vec![("limit", "0")], "invalid_field"),
        (vec![("limit", "many")], "invalid_field"),
        (vec![("created_from", "last week")], "invalid_field"),
        (vec![("phone_number", "12")], "invalid_phone_number"),
        (
            vec![("phone_number", "4155550123"), ("country", "ZZ")],
            "invalid_field",
        ),
        (vec![("country", "null")], "invalid_field"),
    ] {
        let response = app
            .client
            .get(app.url("/messages"))
            .bearer_auth(&app.api_key)
            .query(&query)
            .send()
            .await
            .expect("the request is sent");
        expect_error_shape(response, 400, code, &format!("{query:?}")).await;
    }
    let unauthenticated = app.client.get(app.url("/messages")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn a_campaigns_results_export_as_csv_to_its_account_only() {
    // Arrange: a campaign of four, one of which ends undelivered.
    let app = spawn_app().await;
    let numbers = [
        number("6001"),
        number("6002"),
        number("6003"),
        number("0004"),
    ];
    let created = app
        .create_campaign(&json!({
            "name": "export",
            "template": "Hi {{name}}",
            "recipients": numbers.iter().map(|n| json!({"phone_number": n, "variables": {"name": "x"}})).collect::<Vec<_>>(),
        }))
        .await;
    let id = created["campaign_id"].as_str().expect("an id").to_owned();
    let sent = crate::helpers::eventually(
        "the campaign's messages to be final",
        std::time::Duration::from_secs(20),
        || async {
            let page = search_as(&app, &app.api_key, &[("campaign_id", &id)]).await;
            let statuses: Vec<String> = page["messages"]
                .as_array()?
                .iter()
                .filter_map(|m| m["status"].as_str().map(str::to_owned))
                .collect();
            (statuses.len() == 4 && statuses.iter().all(|s| s == "read" || s == "undelivered"))
                .then_some(page)
        },
    )
    .await;

    // Act
    let response = app
        .client
        .get(app.url(&format!("/campaigns/{id}/export")))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    let other_key = app.create_account("other", "10", 1000).await;
    let theirs = app
        .client
        .get(app.url(&format!("/campaigns/{id}/export")))
        .bearer_auth(&other_key)
        .send()
        .await
        .unwrap();

    // Assert: a header and one row per message, matching what search shows.
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "message_id");
    assert_eq!(&header[2], "status");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4, "{text}");
    for m in sent["messages"].as_array().unwrap() {
        let row = rows
            .iter()
            .find(|r| &r[0] == m["message_id"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{m} is in the export"));
        assert_eq!(&row[1], m["phone_number"].as_str().unwrap());
        assert_eq!(&row[2], m["status"].as_str().unwrap());
    }
    let undelivered = rows
        .iter()
        .find(|r| &r[2] == "undelivered")
        .expect("one undelivered");
    assert_eq!(&undelivered[1], numbers[3].as_str());
    assert!(!undelivered[3].is_empty(), "its error code");
    expect_error_shape(theirs, 404, "not_found", "another account's campaign").await;
    app.stop().await;
}

#[tokio::test]
async fn a_rare_status_gives_short_pages_that_go_on_until_it_is_found() {
    // Arrange: a page's window and 100 more messages waiting (no workers), the oldest of
    // them failed: a status behind more messages than one page examines.
    let app = crate::helpers::spawn_in(
        crate::helpers::test_dir(),
        "[messaging]\nmax_messages_per_batch = 1000\n",
        false,
    )
    .await;
    let total = herald::store::search::SCAN_LIMIT + 100;
    let mut all = Vec::new();
    for first in (0..total).step_by(1000) {
        let numbers: Vec<String> = (first..total.min(first + 1000))
            .map(|i| format!("+1415{:07}", 2_000_000 + i))
            .collect();
        let items = bulk_items(&numbers, "normal", "scan");
        all.extend(send_bulk_to(&app.client, &app.address, &app.api_key, &items).await);
    }
    assert_eq!(all.len(), total);
    let oldest = all.first().expect("the first message").clone();
    app.execute(&format!(
        "UPDATE message SET status = 'failed', billing = 'released' WHERE message_id = '{oldest}'"
    ))
    .await;
    let key = app.api_key.clone();

    // Act: follow next_before from the first page.
    let mut pages = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut query = vec![("status", "failed".to_owned())];
        if let Some(b) = &before {
            query.push(("before", b.clone()));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = search_as(&app, &key, &query).await;
        pages.push(ids(&page));
        match page["next_before"].as_str() {
            Some(next) => before = Some(next.to_owned()),
            None => break,
        }
        assert!(
            pages.len() <= 3,
            "no more pages than the scan needs: {pages:?}"
        );
    }

    // Assert: the first page examined its share and came back empty with a cursor; the next
    // found the failed message; nothing else matched.
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(pages[0].is_empty(), "{pages:?}");
    assert_eq!(pages[1], vec![oldest]);
    // A filter the indexes serve alone is not bounded: a full page of the newest; and a
    // common status gives exactly the newest that have it, in order, page after page.
    let newest = search_as(&app, &key, &[("limit", "200")]).await;
    assert_eq!(ids(&newest).len(), 200);
    let queued = search_as(&app, &key, &[("limit", "200"), ("status", "queued")]).await;
    assert_eq!(ids(&queued), ids(&newest));
    let next = queued["next_before"].as_str().expect("more pages");
    let older = search_as(&app, &key, &[("status", "queued"), ("before", next)]).await;
    let older_all = search_as(&app, &key, &[("before", next)]).await;
    assert_eq!(ids(&older), ids(&older_all));
    assert_eq!(ids(&older).len(), 50);
    app.stop().await;
}
