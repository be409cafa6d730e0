//! Two-way messaging: inbound messages from every path, threads, read marking, and the
//! STOP/START/HELP keywords (SPEC §7, seed 000's inbox endpoints).

use crate::helpers::{
    PATIENCE, TestApp, eventually, expect_error_shape, metric, number, spawn_app, spawn_app_with,
};
use crate::twilio_stub::{PUBLIC_URL, TwilioStub, spawn_with_twilio, twilio_toml};
use herald::providers::twilio::INBOUND_PATH;
use serde_json::{Value, json};

/// POSTs `params` to a seed 000 endpoint, plain or in a JSON-RPC envelope; answers the
/// status and the result (unwrapped from the envelope).
async fn seed_call(
    app: &TestApp,
    key: &str,
    path: &str,
    params: Value,
    enveloped: bool,
) -> (u16, Value) {
    let body = if enveloped {
        json!({"jsonrpc": "2.0", "method": "call", "params": params, "id": 41})
    } else {
        params
    };
    let response = app.post_json_as(path, &body, key).await;
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap();
    if enveloped {
        assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
        assert_eq!(answer["id"], 41, "{answer}");
        let inner = if answer.get("result").is_some() {
            answer["result"].clone()
        } else {
            answer["error"].clone()
        };
        (status, inner)
    } else {
        (status, answer)
    }
}

async fn receive(app: &TestApp, from: &str, text: &str, enveloped: bool) -> String {
    let (status, answer) = seed_call(
        app,
        &app.api_key,
        "/sms/receive",
        json!({"phone_number": from, "message": text}),
        enveloped,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["success"], true, "{answer}");
    answer["message_id"].as_str().unwrap().to_owned()
}

async fn get_json(app: &TestApp, key: &str, path: &str) -> (u16, Value) {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn opted_out(app: &TestApp, phone: &str) -> bool {
    let (_, list) = get_json(app, &app.api_key, "/opt-outs").await;
    list["opt_outs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o["phone_number"] == phone)
}

#[tokio::test]
async fn seed_000s_inbox_flow_plain_and_enveloped() {
    for enveloped in [false, true] {
        // Arrange
        let app = spawn_app().await;
        let ann = number("7001");
        let bob = number("7002");

        // Act: three messages arrive, two from Ann.
        let first = receive(&app, &ann, "Hello!", enveloped).await;
        receive(&app, &ann, "Are you there?", enveloped).await;
        receive(&app, &bob, "Hi", enveloped).await;

        // Assert: two threads, Ann's most recent last... by its latest message.
        let (status, threads) =
            seed_call(&app, &app.api_key, "/sms/threads", json!({}), enveloped).await;
        assert_eq!(status, 200);
        let threads = threads["threads"].as_array().unwrap().clone();
        assert_eq!(threads.len(), 2, "{threads:?}");
        let ann_thread = threads.iter().find(|t| t["phone_number"] == ann).unwrap();
        assert_eq!(ann_thread["unread_count"], 2);
        assert_eq!(ann_thread["last_message"], "Are you there?");
        assert_eq!(ann_thread["name"], ann);
        let date = ann_thread["last_message_date"].as_str().unwrap();
        assert_eq!(date.len(), 19, "YYYY-MM-DD HH:MM:SS: {date}");
        let (_, unread) =
            seed_call(&app, &app.api_key, "/unread/count", json!({}), enveloped).await;
        assert_eq!(unread["unread_count"], 3, "{unread}");
        assert_eq!(unread["unread_by_thread"].as_array().unwrap().len(), 2);

        // Marking counts only what went from unread to read.
        let (_, marked) = seed_call(
            &app,
            &app.api_key,
            "/message/read",
            json!({"message_ids": [first, first, "msg_01JDZ8K5Q6V0X3M2N4P7R9S1T2"]}),
            enveloped,
        )
        .await;
        assert_eq!(marked, json!({"success": true, "marked_count": 1}));
        let (_, again) = seed_call(
            &app,
            &app.api_key,
            "/message/read",
            json!({"message_id": first}),
            enveloped,
        )
        .await;
        assert_eq!(again["marked_count"], 0);
        let (_, unread) =
            seed_call(&app, &app.api_key, "/unread/count", json!({}), enveloped).await;
        assert_eq!(unread["unread_count"], 2, "{unread}");
        let by_thread = unread["unread_by_thread"].as_array().unwrap();
        let ann_unread = by_thread
            .iter()
            .find(|t| t["thread_id"] == ann_thread["id"])
            .unwrap();
        assert_eq!(ann_unread["unread_count"], 1);
        assert_eq!(ann_unread["thread_name"], ann);

        // Bad input: the one error shape, in the style asked.
        let (status, error) = seed_call(
            &app,
            &app.api_key,
            "/sms/receive",
            json!({"phone_number": "not a number", "message": "x"}),
            enveloped,
        )
        .await;
        assert_eq!(status, 400);
        let code = if enveloped {
            error["data"]["code"].clone()
        } else {
            error["code"].clone()
        };
        assert_eq!(code, "invalid_phone_number", "{error}");
        let (status, _) =
            seed_call(&app, &app.api_key, "/message/read", json!({}), enveloped).await;
        assert_eq!(status, 400);
    }
}

#[tokio::test]
async fn a_burst_received_at_once_stores_each_message_once_counted_in_its_thread() {
    // Arrange: 20 numbers write three messages each, every one delivered twice (a gateway's
    // retry racing its first delivery), and one number says STOP twice, all at once, so the
    // writer stores much of it together.
    let app = spawn_app().await;
    let numbers: Vec<String> = (0..20).map(|i| number(&format!("75{i:02}"))).collect();
    let stopper = number("7599");
    let text = |n: usize, k: usize| format!("Reply {k} from {n}");
    let mut bodies = Vec::new();
    for (n, phone) in numbers.iter().enumerate() {
        for k in 0..3 {
            let body = json!({
                "phone_number": phone, "message": text(n, k), "external_id": format!("burst-{n}-{k}")
            });
            bodies.push(body.clone());
            bodies.push(body);
        }
    }
    let stop = json!({"phone_number": stopper, "message": "stop", "external_id": "burst-stop"});
    bodies.push(stop.clone());
    bodies.push(stop);

    // Act
    let responses = futures::future::join_all(
        bodies
            .iter()
            .map(|body| app.post_json_as("/sms/receive", body, &app.api_key)),
    )
    .await;

    // Assert: both copies answered with one message id, once as the duplicate.
    let mut answers: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
    for (body, response) in bodies.iter().zip(responses) {
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        let reference = body["external_id"].as_str().unwrap().to_owned();
        answers.entry(reference).or_default().push(answer);
    }
    for (reference, copies) in &answers {
        assert_eq!(
            copies[0]["message_id"], copies[1]["message_id"],
            "{reference}"
        );
        let repeats = copies.iter().filter(|a| a["duplicate"] == true).count();
        assert_eq!(repeats, 1, "{reference}: {copies:?}");
    }
    // Each thread counts its own three messages once, and holds them.
    let (_, threads) = get_json(&app, &app.api_key, "/threads?limit=200").await;
    let threads = threads["threads"].as_array().unwrap();
    assert_eq!(threads.len(), numbers.len() + 1, "{threads:?}");
    let thread_of = |phone: &str| {
        let thread = threads.iter().find(|t| t["phone_number"] == phone).unwrap();
        thread["thread_id"].as_str().unwrap().to_owned()
    };
    for (n, phone) in numbers.iter().enumerate() {
        let thread = threads
            .iter()
            .find(|t| t["phone_number"] == *phone)
            .unwrap();
        assert_eq!(thread["unread_count"], 3, "{thread}");
        let id = thread_of(phone);
        let (_, page) = get_json(&app, &app.api_key, &format!("/threads/{id}/messages")).await;
        let mut held: Vec<&str> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"].as_str().unwrap())
            .collect();
        held.sort_unstable();
        assert_eq!(held, [text(n, 0), text(n, 1), text(n, 2)], "{page}");
    }
    // The STOP opted its number out and was answered once, in the same commit.
    assert!(opted_out(&app, &stopper).await);
    let id = thread_of(&stopper);
    let (_, page) = get_json(&app, &app.api_key, &format!("/threads/{id}/messages")).await;
    let directions: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["direction"].as_str().unwrap())
        .collect();
    assert_eq!(directions, ["inbound", "outbound"], "{page}");
}

#[tokio::test]
async fn a_thread_holds_both_directions_in_order_and_a_reply_is_linked_to_what_it_answers() {
    let app = spawn_app().await;
    let ann = number("7101");
    let sent = app.send_ok(&ann, "Your order shipped").await;
    // Delivered, or already read: the test mock reads 20 ms after delivering, so a poll can
    // miss `delivered` altogether.
    app.wait_for(&sent, |s| s == "delivered" || s == "read")
        .await;
    let reply = receive(&app, &ann, "Thanks!", false).await;
    let later = app.send_ok(&ann, "You're welcome").await;

    let (_, threads) = get_json(&app, &app.api_key, "/threads").await;
    let thread = &threads["threads"][0];
    assert_eq!(thread["last_message"], "You're welcome", "{thread}");
    let id = thread["thread_id"].as_str().unwrap();
    let (status, page) = get_json(&app, &app.api_key, &format!("/threads/{id}/messages")).await;
    assert_eq!(status, 200, "{page}");
    let messages = page["messages"].as_array().unwrap();
    let seen: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| {
            (
                m["direction"].as_str().unwrap(),
                m["message_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("outbound", sent.as_str()),
            ("inbound", reply.as_str()),
            ("outbound", later.as_str())
        ]
    );
    assert_eq!(messages[1]["read"], false);

    // Pages: one at a time, never repeating, then done.
    let mut after: Option<String> = None;
    let mut paged = Vec::new();
    loop {
        let path = match &after {
            Some(a) => format!("/threads/{id}/messages?limit=1&after={a}"),
            None => format!("/threads/{id}/messages?limit=1"),
        };
        let (_, page) = get_json(&app, &app.api_key, &path).await;
        for m in page["messages"].as_array().unwrap() {
            paged.push(m["message_id"].as_str().unwrap().to_owned());
        }
        match page["next_after"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, [sent.clone(), reply.clone(), later.clone()]);

    // The reply knows what it answered.
    let (answered,): (Option<String>,) = app
        .fetch_one(&format!(
            "SELECT in_reply_to FROM inbound_message WHERE message_id = '{reply}'"
        ))
        .await;
    assert_eq!(answered.as_deref(), Some(sent.as_str()));

    // Another account sees none of it.
    let other = app.create_account("other", "10.00", 100).await;
    let (_, theirs) = get_json(&app, &other, "/threads").await;
    assert_eq!(theirs["threads"], json!([]));
    let (status, _) = get_json(&app, &other, &format!("/threads/{id}/messages")).await;
    assert_eq!(status, 404);
    let (_, marked) = seed_call(
        &app,
        &other,
        "/message/read",
        json!({"message_id": reply}),
        false,
    )
    .await;
    assert_eq!(marked["marked_count"], 0);
    let (status, _) = get_json(&app, &app.api_key, "/threads?before=garbage").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn stop_in_any_form_opts_out_and_is_confirmed_once_start_opts_back_in() {
    let app = spawn_app().await;
    let forms = [
        "STOP",
        "stop",
        "Stop!",
        "  unsubscribe. ",
        "Cancel",
        "END",
        "quit?",
        "Revoke",
        "OptOut",
        "STOPALL",
    ];
    for (i, form) in forms.iter().enumerate() {
        let phone = number(&format!("72{i:02}"));
        receive(&app, &phone, form, false).await;
        assert!(opted_out(&app, &phone).await, "{form:?} opts out");
        // A send to it is refused now.
        let r = app
            .send_message(&json!({"phone_number": phone, "message": "promo"}))
            .await;
        expect_error_shape(r, 400, "recipient_opted_out", form).await;
    }

    // Words that merely contain a keyword are messages.
    for (i, text) in ["please stop calling", "don't stop", "stopping by later"]
        .iter()
        .enumerate()
    {
        let phone = number(&format!("73{i:02}"));
        receive(&app, &phone, text, false).await;
        assert!(!opted_out(&app, &phone).await, "{text:?}");
    }

    // One STOP, retried by its gateway with the same id: stored once, confirmed once, and
    // the confirmation goes out although the number is opted out.
    let phone = number("7400");
    for _ in 0..2 {
        let (status, answer) = seed_call(
            &app,
            &app.api_key,
            "/sms/receive",
            json!({"phone_number": phone, "message": "STOP", "external_id": "gw-1"}),
            false,
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    let (_, threads) = get_json(&app, &app.api_key, "/threads?limit=200").await;
    let thread = threads["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["phone_number"] == phone)
        .unwrap()
        .clone();
    assert_eq!(thread["unread_count"], 1, "stored once: {thread}");
    let id = thread["thread_id"].as_str().unwrap().to_owned();
    let confirmation = eventually("the confirmation is delivered", PATIENCE, || async {
        let (_, page) = get_json(&app, &app.api_key, &format!("/threads/{id}/messages")).await;
        let outbound: Vec<Value> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["direction"] == "outbound")
            .cloned()
            .collect();
        (outbound.len() == 1 && outbound[0]["status"] == "delivered").then(|| outbound[0].clone())
    })
    .await;
    assert!(
        confirmation["body"]
            .as_str()
            .unwrap()
            .contains("unsubscribed"),
        "{confirmation}"
    );
    let (_, page) = get_json(&app, &app.api_key, &format!("/threads/{id}/messages")).await;
    assert_eq!(page["messages"][0]["keyword"], "stop");

    // START opts back in; sends go again.
    receive(&app, &phone, "Start", false).await;
    assert!(!opted_out(&app, &phone).await);
    let r = app
        .send_message(&json!({"phone_number": phone, "message": "welcome back"}))
        .await;
    assert_eq!(r.status(), 202);

    // HELP is answered with the help text, and opts nobody out.
    let helped = number("7401");
    receive(&app, &helped, "help", false).await;
    assert!(!opted_out(&app, &helped).await);
    let (_, threads) = get_json(&app, &app.api_key, "/threads?limit=200").await;
    let help_thread = threads["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["phone_number"] == helped)
        .unwrap()["thread_id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the help text is sent", PATIENCE, || async {
        let (_, page) = get_json(
            &app,
            &app.api_key,
            &format!("/threads/{help_thread}/messages"),
        )
        .await;
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["direction"] == "outbound" && m["body"] == "Reply STOP to unsubscribe.")
            .then_some(())
    })
    .await;

    // Opt-outs are the account's own: another account may still send to the number.
    let other = app.create_account("other", "10.00", 100).await;
    let r = app
        .post_json_as(
            "/send-message/",
            &json!({"phone_number": number("7200"), "message": "hi"}),
            &other,
        )
        .await;
    assert_eq!(r.status(), 202);
}

/// A Twilio incoming-message webhook with `params`, signed with `token` (the
/// deployment's unless a test says otherwise).
async fn twilio_inbound(app: &TestApp, params: &[(&str, &str)], token: &str) -> reqwest::Response {
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let signature = herald::providers::twilio::signature::sign(
        token,
        &format!("{PUBLIC_URL}{INBOUND_PATH}"),
        &owned,
    );
    app.client
        .post(format!("{}{INBOUND_PATH}", app.address))
        .header("X-Twilio-Signature", signature)
        .form(params)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn twilio_inbound_is_signed_stored_once_and_answered_with_empty_twiml() {
    let (app, _stub) = spawn_with_twilio("").await;
    let ann = number("7501");
    let params = [
        ("AccountSid", crate::twilio_stub::ACCOUNT_SID),
        ("MessageSid", "SM11111111111111111111111111111111"),
        ("From", ann.as_str()),
        ("To", crate::twilio_stub::FROM),
        ("Body", "Photo of the parcel"),
        ("NumMedia", "2"),
        ("MediaUrl0", "https://api.twilio.com/media/ME1"),
        ("MediaUrl1", "https://api.twilio.com/media/ME2"),
    ];

    // Tampered (another body than was signed) and unsigned: refused, nothing stored.
    let mut tampered = params;
    tampered[4] = ("Body", "STOP");
    let signature = {
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        herald::providers::twilio::signature::sign(
            crate::twilio_stub::AUTH_TOKEN,
            &format!("{PUBLIC_URL}{INBOUND_PATH}"),
            &owned,
        )
    };
    let r = app
        .client
        .post(format!("{}{INBOUND_PATH}", app.address))
        .header("X-Twilio-Signature", signature)
        .form(&tampered)
        .send()
        .await
        .unwrap();
    expect_error_shape(r, 403, "invalid_signature", "tampered").await;
    let r = app
        .client
        .post(format!("{}{INBOUND_PATH}", app.address))
        .form(&params)
        .send()
        .await
        .unwrap();
    expect_error_shape(r, 403, "invalid_signature", "unsigned").await;
    assert!(!opted_out(&app, &ann).await);

    // Signed, and delivered twice (Twilio retries): stored once.
    for _ in 0..2 {
        let r = twilio_inbound(&app, &params, crate::twilio_stub::AUTH_TOKEN).await;
        assert_eq!(r.status(), 200);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/xml"),
            "{:?}",
            r.headers()
        );
        assert!(r.text().await.unwrap().contains("<Response></Response>"));
    }
    let (_, threads) = get_json(&app, &app.api_key, "/threads").await;
    assert_eq!(threads["threads"].as_array().unwrap().len(), 1, "{threads}");
    assert_eq!(threads["threads"][0]["unread_count"], 1);
    let (media,): (String,) = app
        .fetch_one("SELECT media_urls FROM inbound_message")
        .await;
    let media: Vec<String> = serde_json::from_str(&media).unwrap();
    assert_eq!(
        media,
        [
            "https://api.twilio.com/media/ME1",
            "https://api.twilio.com/media/ME2"
        ]
    );
    assert_eq!(
        metric(
            &app.client,
            &app.address,
            "herald_inbound_total{provider=\"twilio\",result=\"repeat\"}"
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_message_to_a_number_no_account_owns_is_kept_and_counted_as_unroutable() {
    let stub = TwilioStub::start().await;
    let app = spawn_app_with(&twilio_toml(
        &stub.url,
        "[inbound]\nfallback_account = \"\"\n",
    ))
    .await;
    let stranger = number("7601");
    let params = [
        ("AccountSid", crate::twilio_stub::ACCOUNT_SID),
        ("MessageSid", "SM22222222222222222222222222222222"),
        ("From", stranger.as_str()),
        ("To", crate::twilio_stub::FROM),
        ("Body", "STOP"),
    ];

    let r = twilio_inbound(&app, &params, crate::twilio_stub::AUTH_TOKEN).await;

    // 200, so Twilio stops retrying; kept, in no account's inbox, opting nobody out.
    assert_eq!(r.status(), 200);
    let (_, threads) = get_json(&app, &app.api_key, "/threads").await;
    assert_eq!(threads["threads"], json!([]));
    assert!(!opted_out(&app, &stranger).await);
    let (kept,): (i64,) = app
        .fetch_one("SELECT count(*) FROM inbound_message WHERE account_id IS NULL")
        .await;
    assert_eq!(kept, 1);
    assert_eq!(
        metric(
            &app.client,
            &app.address,
            "herald_inbound_total{provider=\"twilio\",result=\"unroutable\"}"
        )
        .await,
        1.0
    );
    // Once the account has written to the number, its replies are the account's.
    let sent = app.send_ok(&stranger, "hello").await;
    app.wait_for_status(&sent, "sent").await;
    let mut again = params;
    again[1] = ("MessageSid", "SM33333333333333333333333333333333");
    again[4] = ("Body", "who is this?");
    let r = twilio_inbound(&app, &again, crate::twilio_stub::AUTH_TOKEN).await;
    assert_eq!(r.status(), 200);
    let (_, threads) = get_json(&app, &app.api_key, "/threads").await;
    assert_eq!(threads["threads"][0]["phone_number"], stranger);
}

#[tokio::test]
async fn the_mock_plays_replies_some_of_them_stop_each_stored_once_across_a_restart() {
    // Every delivered recipient answers 300 ms after delivery, half of them STOP.
    let config =
        "[providers.mock]\nreply_rate = 1.0\nreply_stop_rate = 0.5\nreply_after_ms = 300\n";
    let app = crate::helpers::spawn_in(crate::helpers::test_dir(), config, true).await;
    let numbers: Vec<String> = (0..20).map(|i| number(&format!("77{i:02}"))).collect();
    let mut ids = Vec::new();
    for n in &numbers {
        ids.push(app.send_ok(n, "Your order shipped").await);
    }
    for id in &ids {
        app.wait_for(id, |s| s == "delivered" || s == "read").await;
    }
    // Stopped while replies are still on their way: the network re-plans them at start.
    let dir = app.stop().await;
    let app = crate::helpers::spawn_in(dir, config, true).await;

    let threads = eventually("every recipient answered", PATIENCE, || async {
        let (_, page) = get_json(&app, &app.api_key, "/threads?limit=200").await;
        let threads = page["threads"].as_array().unwrap().clone();
        (threads.len() == numbers.len()).then_some(threads)
    })
    .await;
    // Each reply stored once, in its number's thread, linked to the message it answers.
    assert!(
        threads.iter().all(|t| t["unread_count"] == 1),
        "{threads:?}"
    );
    let rows: Vec<(String, String, Option<String>)> = app
        .fetch_all("SELECT from_number, body, in_reply_to FROM inbound_message")
        .await;
    assert_eq!(rows.len(), numbers.len());
    for (from, _, in_reply_to) in &rows {
        let i = numbers.iter().position(|n| n == from).unwrap();
        assert_eq!(in_reply_to.as_deref(), Some(ids[i].as_str()));
    }
    // The STOPs opted their numbers out, and only theirs.
    let stops: Vec<&String> = rows
        .iter()
        .filter(|(_, body, _)| body == "STOP")
        .map(|(from, _, _)| from)
        .collect();
    assert!(
        !stops.is_empty() && stops.len() < numbers.len(),
        "{stops:?}"
    );
    for (from, body, _) in &rows {
        assert_eq!(
            opted_out(&app, from).await,
            body == "STOP",
            "{from}: {body}"
        );
    }
}

#[tokio::test]
async fn an_account_answers_stop_and_help_with_its_own_texts_or_not_at_all() {
    let app = spawn_app().await;
    let other = app.create_account("other", "10.00", 100).await;
    let put = |key: String, body: Value| {
        let request = app
            .client
            .put(app.url("/keyword-replies"))
            .bearer_auth(key)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let (_, defaults) = get_json(&app, &app.api_key, "/keyword-replies").await;
    assert_eq!(defaults["help_reply"], "Reply STOP to unsubscribe.");
    assert_eq!(defaults["help_reply_own"], false);

    // Its own HELP text (two segments' worth), and no answer to STOP at all.
    let help = "Acme Shop: order help at acme.example/help or call 0800 555 0100. Msg&data rates may apply. Reply STOP to opt out, START to opt back in, HELP for this message again.";
    let r = put(
        app.api_key.clone(),
        json!({"stop_reply": "", "help_reply": help}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["help_reply"], help);
    assert_eq!(view["help_reply_own"], true);
    assert_eq!(view["stop_reply"], "");
    // Another account keeps the deployment's.
    let (_, theirs) = get_json(&app, &other, "/keyword-replies").await;
    assert_eq!(theirs["help_reply_own"], false);

    let helped = number("7801");
    let stopped = number("7802");
    receive(&app, &helped, "HELP", false).await;
    receive(&app, &stopped, "STOP", false).await;
    assert!(opted_out(&app, &stopped).await);

    let (_, threads) = get_json(&app, &app.api_key, "/threads").await;
    let thread_of = |phone: &str| {
        threads["threads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["phone_number"] == phone)
            .unwrap()["thread_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (help_thread, stop_thread) = (thread_of(&helped), thread_of(&stopped));
    let answer = eventually("the help text is sent", PATIENCE, || async {
        let (_, page) = get_json(
            &app,
            &app.api_key,
            &format!("/threads/{help_thread}/messages"),
        )
        .await;
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["direction"] == "outbound")
            .cloned()
    })
    .await;
    assert_eq!(answer["body"], help);
    let status = app.status(answer["message_id"].as_str().unwrap()).await;
    assert_eq!(status["segments"], 2, "priced as its own text: {status}");
    let (_, page) = get_json(
        &app,
        &app.api_key,
        &format!("/threads/{stop_thread}/messages"),
    )
    .await;
    assert!(
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["direction"] == "inbound"),
        "no answer to STOP: {page}"
    );

    // Bad input: the error shape with the field; null goes back to the deployment's.
    let r = put(app.api_key.clone(), json!({"stop_reply": "x".repeat(481)})).await;
    let body = expect_error_shape(r, 400, "invalid_field", "too long").await;
    assert_eq!(body["field"], "stop_reply");
    let r = put(
        app.api_key.clone(),
        json!({"stop_reply": null, "help_reply": null}),
    )
    .await;
    let view: Value = r.json().await.unwrap();
    assert_eq!(view["stop_reply_own"], false);
    assert!(
        view["stop_reply"]
            .as_str()
            .unwrap()
            .contains("unsubscribed")
    );
}

#[tokio::test]
async fn a_campaign_shows_its_replies_each_linked_to_the_message_it_answers() {
    let app = spawn_app().await;
    let (ann, bob, cy) = (number("7901"), number("7902"), number("7903"));
    let created = app
        .create_campaign(&json!({
            "name": "Spring sale",
            "template": "20% off this week",
            "phone_numbers": [ann, bob, cy],
        }))
        .await;
    let id = created["campaign_id"].as_str().unwrap().to_owned();
    app.wait_campaign(&id, "completed").await;

    receive(&app, &ann, "Interested!", false).await;
    receive(&app, &bob, "stop", false).await;

    let campaign = app.campaign(&id).await;
    assert_eq!(campaign["counters"]["replies"], 2, "{campaign}");
    let (status, page) = get_json(&app, &app.api_key, &format!("/campaigns/{id}/replies")).await;
    assert_eq!(status, 200, "{page}");
    let replies = page["replies"].as_array().unwrap();
    let seen: Vec<(&str, &str)> = replies
        .iter()
        .map(|r| {
            (
                r["phone_number"].as_str().unwrap(),
                r["body"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [(ann.as_str(), "Interested!"), (bob.as_str(), "stop")]
    );
    assert_eq!(replies[1]["keyword"], "stop");
    // Each answers the campaign's message to that number.
    for reply in replies {
        let in_reply_to = reply["in_reply_to"].as_str().unwrap();
        assert!(in_reply_to.starts_with("msg_"), "{reply}");
        let answered: (String, String) = app
            .fetch_one(&format!(
                "SELECT phone_number, campaign_id FROM message WHERE message_id = '{in_reply_to}'"
            ))
            .await;
        assert_eq!(
            answered,
            (
                reply["phone_number"].as_str().unwrap().to_owned(),
                id.clone()
            )
        );
    }
    // Another account: 404.
    let other = app.create_account("other", "10.00", 100).await;
    let (status, _) = get_json(&app, &other, &format!("/campaigns/{id}/replies")).await;
    assert_eq!(status, 404);
}
