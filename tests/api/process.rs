//! The `herald` binary itself: the CLI next to a running server, and SIGTERM draining.
use crate::helpers::{API_KEY, PATIENCE, number, spawn_app, test_dir};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn herald(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .env(
            "HERALD__DATABASE__URL",
            format!("sqlite://{}", dir.join("herald.db").display()),
        )
        .env("HERALD__AUTH__BOOTSTRAP_API_KEY", API_KEY)
        .env("RUST_LOG", "warn");
    command
}

/// The last line a command printed (where the new key goes).
fn last_line(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn accounts_and_keys_can_be_created_while_serve_runs() {
    let app = spawn_app().await;
    let dir = app.dir.path().to_owned();

    let created = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || {
            herald(&dir)
                .args(["accounts", "create", "acme", "--balance", "5.25"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let first_key = last_line(&created);
    let another = tokio::task::spawn_blocking(move || {
        herald(&dir)
            .args(["keys", "create", "acme"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let second_key = last_line(&another);

    assert_ne!(first_key, second_key);
    for key in [&first_key, &second_key] {
        let balance = app.balance_as(key).await;
        assert_eq!(balance["balance"], 5.25);
    }
    let unknown = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .env(
            "HERALD__DATABASE__URL",
            format!("sqlite://{}", app.dir.path().join("herald.db").display()),
        )
        .args(["keys", "create", "nobody"])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("nobody"));
    app.stop().await;
}

/// Kills the child if the test fails before it exits.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn count(pool: &sqlx::SqlitePool, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap();
    n
}

#[tokio::test]
async fn sigterm_lets_deliveries_in_flight_finish_and_gives_back_the_rest() {
    // Arrange: slow hand-overs, so a SIGTERM finds deliveries in flight.
    let dir = test_dir();
    let port = free_port();
    let child = herald(dir.path())
        .args(["serve"])
        .env("HERALD__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env("HERALD__PROVIDERS__MOCK__ACCEPT_DELAY_MS", "300")
        .env("HERALD__WORKERS__CONCURRENCY", "4")
        .env("HERALD__QUEUE__BATCH_SIZE", "8")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "herald never came up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let messages: Vec<Value> = (0..40)
        .map(|i| json!({"phone_number": number(&format!("2{i:03}")), "message": "drain"}))
        .collect();
    let response = client
        .post(format!("{base}/api/messaging/send-bulk/"))
        .bearer_auth(API_KEY)
        .json(&json!({"messages": messages}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("herald.db").display()
    ))
    .await
    .unwrap();
    while count(
        &pool,
        "SELECT COUNT(*) FROM message WHERE status = 'sending'",
    )
    .await
        == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing was ever claimed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Act
    let pid = running.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || running.0.wait().unwrap())
        .await
        .unwrap();

    // Assert: a clean exit, nothing left leased to the dead process, some delivered, the
    // rest back in the queue for the next start.
    assert!(status.success(), "exit status {status:?}");
    let leased = count(
        &pool,
        "SELECT COUNT(*) FROM message WHERE status = 'sending' AND lease_until > 0",
    )
    .await;
    assert_eq!(leased, 0, "every claim was finished or given back");
    let sent = count(
        &pool,
        "SELECT COUNT(*) FROM message WHERE status IN ('sent', 'delivered', 'read')",
    )
    .await;
    let waiting = count(
        &pool,
        "SELECT COUNT(*) FROM message WHERE status IN ('queued', 'sending')",
    )
    .await;
    assert!(sent >= 1, "the deliveries in flight finished");
    assert_eq!(
        sent + waiting,
        40,
        "nothing lost: {sent} sent, {waiting} waiting"
    );
}

#[tokio::test]
async fn campaign_launch_uploads_a_csv_and_follows_it_to_the_end() {
    let app = spawn_app().await;
    let dir = app.dir.path().to_owned();
    let csv = dir.join("list.csv");
    let template = dir.join("template.hbs");
    std::fs::write(
        &csv,
        format!(
            "phone_number,name\n{},Ana\n{},Bo\nnot a number,Cy\n{},Di\n",
            number("0210"),
            number("0211"),
            number("0212")
        ),
    )
    .unwrap();
    std::fs::write(&template, "Hi {{name}}, thanks for shopping with us.\n").unwrap();

    let launch = |extra: &'static [&'static str]| {
        let (dir, csv, template, address) = (
            dir.clone(),
            csv.clone(),
            template.clone(),
            app.address.clone(),
        );
        tokio::task::spawn_blocking(move || {
            herald(&dir)
                .args(["campaign", "launch", "--name", "CLI", "--url", &address])
                .arg("--csv")
                .arg(&csv)
                .arg("--template")
                .arg(&template)
                .args(extra)
                .env("HERALD_API_KEY", API_KEY)
                .output()
                .unwrap()
        })
    };
    let dry = launch(&["--dry-run"]).await.unwrap();
    let out = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(
        dry.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(out.contains("3 accepted, 1 rejected"), "{out}");
    assert!(out.contains("Dry run"), "{out}");

    let real = launch(&[]).await.unwrap();
    let out = String::from_utf8_lossy(&real.stdout).into_owned();
    let err = String::from_utf8_lossy(&real.stderr).into_owned();
    assert!(real.status.success(), "{out}{err}");
    assert!(out.contains("done: sent 3"), "{out}{err}");
    let id = out
        .split_whitespace()
        .find(|w| w.starts_with("cmp_"))
        .expect("the campaign id is printed")
        .to_owned();
    let c = app.campaign(&id).await;
    assert_eq!(c["status"], "completed");
    assert_eq!(c["counters"]["handed_over"], 3);

    let status = tokio::task::spawn_blocking({
        let (dir, address) = (dir.clone(), app.address.clone());
        move || {
            herald(&dir)
                .args(["campaign", "status", &id, "--url", &address])
                .env("HERALD_API_KEY", API_KEY)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let shown: Value = serde_json::from_slice(&status.stdout).expect("the status is JSON");
    assert_eq!(shown["status"], "completed");

    let no_key = herald(&dir)
        .args(["campaign", "status", "cmp_x", "--url", &app.address])
        .env_remove("HERALD_API_KEY")
        .output()
        .unwrap();
    assert!(!no_key.status.success());
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("API key"));
}

#[tokio::test]
async fn campaign_launch_local_needs_no_server() {
    let dir = test_dir();
    let csv = dir.path().join("list.csv");
    let template = dir.path().join("template.hbs");
    std::fs::write(
        &csv,
        format!("phone_number\n{}\n{}\n", number("0220"), number("0221")),
    )
    .unwrap();
    std::fs::write(&template, "Your order shipped.").unwrap();
    let path = dir.path().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        herald(&path)
            .args(["campaign", "launch", "--local", "--name", "Local"])
            .arg("--csv")
            .arg(&csv)
            .arg("--template")
            .arg(&template)
            .env("HERALD_API_KEY", API_KEY)
            .env("HERALD__CAMPAIGNS__TEMPLATES_DIR", path.join("none"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let out = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.contains("done: sent 2"), "{out}");

    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("herald.db").display()
    ))
    .await
    .unwrap();
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM campaign WHERE status = 'completed'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn herald_send_prints_the_id_and_follows_the_message_to_its_final_status() {
    // Arrange: a running Herald (the test's app) and the CLI pointed at it.
    let app = spawn_app().await;
    let dir = app.dir.path().to_owned();
    let address = app.address.clone();
    let send = |to: String| {
        let (dir, address) = (dir.clone(), address.clone());
        tokio::task::spawn_blocking(move || {
            herald(&dir)
                .args(["send", "--url", &address, "--api-key", API_KEY, "--to", &to])
                .args([
                    "-m",
                    "hello from the command line",
                    "--follow",
                    "--timeout",
                    "30",
                ])
                .output()
                .unwrap()
        })
    };

    // Act: one that is read, one the network refuses.
    let read = send(number("7001")).await.unwrap();
    let failed = send(number("0000")).await.unwrap();

    // Assert: the id first, then every status the API's history holds, in order.
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let out = String::from_utf8_lossy(&read.stdout).into_owned();
    let lines: Vec<&str> = out.lines().collect();
    let id = lines.first().copied().unwrap_or_default();
    let view = app.status(id).await;
    assert_eq!(view["status"], "read", "{out}");
    let printed: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    let history: Vec<&str> = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(printed, history, "{out}");
    assert_eq!(history, ["queued", "sending", "sent", "delivered", "read"]);

    assert_eq!(failed.status.code(), Some(1), "a failed message exits 1");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("failed"), "{stderr}");
    let failed_id = String::from_utf8_lossy(&failed.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(app.status(&failed_id).await["status"], "failed");

    // A refused send prints the API's reason and exits non-zero, with no id.
    let refused = send("12".to_owned()).await.unwrap();
    assert!(!refused.status.success());
    assert!(refused.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("invalid_phone_number"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    app.stop().await;
}
