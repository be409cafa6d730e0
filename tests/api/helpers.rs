//! The test kit: every test gets its own Herald on a random port with its own SQLite file
//! (or PostgreSQL database, see [`on_postgres`]), the mock provider and workers, and typed
//! helpers to talk to it over HTTP.

use crate::postgres::TestDatabase;
use herald::app::Application;
use herald::config::Settings;
use herald::store::Store;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub(crate) const API_KEY: &str = "test-key-0123456789";
const TEST_TOML: &str = include_str!("../../config/test.toml");

/// How long a test waits for something asynchronous (a delivery, a receipt) to happen.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

pub(crate) struct TestApp {
    pub(crate) address: String,
    pub(crate) client: reqwest::Client,
    pub(crate) api_key: String,
    pub(crate) store: Store,
    pub(crate) dir: tempfile::TempDir,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The PostgreSQL database of a run with `HERALD_TEST_BACKEND=postgres`, dropped with the
    /// app (or kept for a restart in the same folder by [`TestApp::stop`]).
    postgres: Option<TestDatabase>,
}

/// Whether `spawn_app` and its kin put each test's Herald on a PostgreSQL database of its own
/// (`HERALD_TEST_BACKEND=postgres`, which `.ci/run` sets for a second pass over the modules
/// that talk to Herald only over HTTP) instead of a SQLite file in the test's folder.
pub(crate) fn on_postgres() -> bool {
    std::env::var("HERALD_TEST_BACKEND").is_ok_and(|backend| backend == "postgres")
}

/// A unique folder for one test's database and logs.
pub(crate) fn test_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("herald-test-")
        .tempdir()
        .expect("a temporary folder")
}

pub(crate) fn init_logging() {
    if std::env::var("TEST_LOG").is_ok() {
        herald::telemetry::init();
    }
}

/// PostgreSQL databases of stopped apps by their test folder: a restart in the folder that
/// `stop` handed back finds its database again, as it would find its SQLite file.
static PARKED: std::sync::Mutex<Vec<(PathBuf, TestDatabase)>> = std::sync::Mutex::new(Vec::new());

fn park(dir: &std::path::Path, db: TestDatabase) {
    if let Ok(mut parked) = PARKED.lock() {
        parked.push((dir.to_owned(), db));
    }
}

/// The database parked for `dir`, if any; drops those whose folder is gone (their test ended
/// without a restart).
fn unpark(dir: &std::path::Path) -> Option<TestDatabase> {
    let mut parked = PARKED.lock().ok()?;
    let mut found = None;
    let mut gone = Vec::new();
    for (path, db) in parked.drain(..).collect::<Vec<_>>() {
        if path == dir {
            found = Some(db);
        } else if path.exists() {
            parked.push((path, db));
        } else {
            gone.push(db);
        }
    }
    drop(parked);
    drop(gone);
    found
}

/// Settings for a test in `dir`: defaults, `config/test.toml`, then `extra` TOML.
pub(crate) fn settings_in(dir: &std::path::Path, extra: &str) -> Settings {
    let db = dir.join("herald.db");
    settings_on(&format!("sqlite://{}", db.display()), "", extra)
}

/// Settings for a test on the database at `url`.
fn settings_on(url: &str, more: &str, extra: &str) -> Settings {
    let base = format!("[database]\nurl = \"{url}\"\n[auth]\nbootstrap_api_key = \"{API_KEY}\"\n");
    Settings::load_with(None, &[TEST_TOML, &base, more, extra]).expect("valid test settings")
}

pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with("").await
}

pub(crate) async fn spawn_app_with(extra: &str) -> TestApp {
    let dir = test_dir();
    spawn_in(dir, extra, true).await
}

/// Starts Herald on the database in `dir` (kept by the returned app).
pub(crate) async fn spawn_in(dir: tempfile::TempDir, extra: &str, with_workers: bool) -> TestApp {
    init_logging();
    let postgres = if on_postgres() {
        match unpark(dir.path()) {
            Some(db) => Some(db),
            None => Some(TestDatabase::named("herald_suite").await),
        }
    } else {
        None
    };
    let settings = match &postgres {
        // The mock's journal goes beside a SQLite file by default; here it has none.
        Some(db) => settings_on(
            &db.url,
            &format!(
                "[providers.mock]\nhandover_log = {}\n",
                toml_path(&dir.path().join("mock-network.log"))
            ),
            extra,
        ),
        None => settings_in(dir.path(), extra),
    };
    let app = Application::build(settings, with_workers)
        .await
        .expect("the app builds");
    let port = app.port();
    let store = app.store().clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until(shutdown.clone()));
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
        api_key: API_KEY.to_owned(),
        store,
        dir,
        shutdown,
        server: Some(server),
        postgres,
    }
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/api/messaging{path}", self.address)
    }

    /// A read connection to this app's SQLite file, for assertions the API does not show.
    pub(crate) async fn pool(&self) -> sqlx::SqlitePool {
        let url = format!("sqlite://{}", self.dir.path().join("herald.db").display());
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("the test database opens")
    }

    /// One row of `sql` (no parameters; SQL both dialects read alike) from this app's
    /// database, SQLite or PostgreSQL: for assertions the API does not show, in modules that
    /// run on both backends.
    pub(crate) async fn fetch_one<T>(&self, sql: &str) -> T
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + Send
            + Unpin,
    {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match &self.postgres {
            Some(db) => sqlx::query_as(sql).fetch_one(&db.pool().await).await,
            None => sqlx::query_as(sql).fetch_one(&self.pool().await).await,
        }
        .expect("the row")
    }

    /// Runs `sql` (no parameters) on this app's database, SQLite or PostgreSQL; answers the
    /// rows it changed.
    pub(crate) async fn execute(&self, sql: &str) -> u64 {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match &self.postgres {
            Some(db) => sqlx::query(sql)
                .execute(&db.pool().await)
                .await
                .map(|r| r.rows_affected()),
            None => sqlx::query(sql)
                .execute(&self.pool().await)
                .await
                .map(|r| r.rows_affected()),
        }
        .expect("executed")
    }

    /// Every row of `sql`, as [`TestApp::fetch_one`] reads one.
    pub(crate) async fn fetch_all<T>(&self, sql: &str) -> Vec<T>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + Send
            + Unpin,
    {
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match &self.postgres {
            Some(db) => sqlx::query_as(sql).fetch_all(&db.pool().await).await,
            None => sqlx::query_as(sql).fetch_all(&self.pool().await).await,
        }
        .expect("the rows")
    }

    /// The mock network's journal (by default beside the database).
    pub(crate) fn handover_log(&self) -> PathBuf {
        self.dir.path().join("mock-network.log")
    }

    /// Stops the app (drains workers, commits) and hands back its folder.
    pub(crate) async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("the server task")
                .expect("a clean stop");
        }
        if let Some(db) = self.postgres.take() {
            park(self.dir.path(), db);
        }
        self.dir
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.post_json_as(path, body, &self.api_key).await
    }

    pub(crate) async fn post_json_as(
        &self,
        path: &str,
        body: &Value,
        key: &str,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("the request is sent")
    }

    pub(crate) async fn send_message(&self, body: &Value) -> reqwest::Response {
        self.post_json("/send-message/", body).await
    }

    /// Sends `text` to `number` and returns the new message id (panics unless 202).
    pub(crate) async fn send_ok(&self, number: &str, text: &str) -> String {
        let response = self
            .send_message(&json!({"phone_number": number, "message": text}))
            .await;
        assert_eq!(response.status(), 202, "send to {number}");
        let body: Value = response.json().await.expect("JSON");
        body["message_id"]
            .as_str()
            .expect("a message id")
            .to_owned()
    }

    pub(crate) async fn status_as(&self, message_id: &str, key: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/message/{message_id}/status/")))
            .bearer_auth(key)
            .send()
            .await
            .expect("the request is sent")
    }

    pub(crate) async fn status(&self, message_id: &str) -> Value {
        self.status_view_as(message_id, &self.api_key).await
    }

    pub(crate) async fn status_view_as(&self, message_id: &str, key: &str) -> Value {
        let response = self.status_as(message_id, key).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("JSON")
    }

    pub(crate) async fn balance_as(&self, key: &str) -> Value {
        self.get_ok_as("/account/balance/", key).await
    }

    /// GETs `path` under `/api/messaging` with `key`; asserts a 200 and returns its JSON.
    pub(crate) async fn get_ok_as(&self, path: &str, key: &str) -> Value {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("the request is sent");
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("JSON")
    }

    pub(crate) async fn balance(&self) -> Value {
        self.balance_as(&self.api_key).await
    }

    /// Polls the message until `done(status)` holds, and returns its last view. Fails the
    /// test after [`PATIENCE`].
    pub(crate) async fn wait_for(&self, message_id: &str, done: impl Fn(&str) -> bool) -> Value {
        self.wait_for_as(message_id, &self.api_key, done).await
    }

    /// As [`TestApp::wait_for`], for a message of the account whose key is `key`.
    pub(crate) async fn wait_for_as(
        &self,
        message_id: &str,
        key: &str,
        done: impl Fn(&str) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let view = self.status_view_as(message_id, key).await;
            if done(view["status"].as_str().unwrap_or_default()) {
                return view;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "message {message_id} never got there; last seen: {view}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until every message in `ids` was handed to the provider (sent or later).
    pub(crate) async fn wait_all_handed_over(&self, ids: &[String]) {
        for id in ids {
            self.wait_for(id, handed_over).await;
        }
    }

    pub(crate) async fn wait_for_status(&self, message_id: &str, status: &str) -> Value {
        self.wait_for(message_id, |s| s == status).await
    }

    /// Creates another account with its own key; returns the key.
    pub(crate) async fn create_account(
        &self,
        name: &str,
        balance: &str,
        daily_limit: i64,
    ) -> String {
        let account = self
            .store
            .create_account(herald::store::NewAccount {
                name: name.to_owned(),
                balance: herald::domain::Money::parse(balance).expect("an amount"),
                currency: "USD".to_owned(),
                daily_limit,
            })
            .await
            .expect("the account is created");
        let key = herald::auth::generate_key();
        self.store
            .insert_api_key(&account, herald::auth::hash_key(&key))
            .await
            .expect("the key is stored");
        key
    }
}

/// Asserts the status, a JSON content type and the one error shape; returns the body.
pub(crate) async fn expect_error_shape(
    response: reqwest::Response,
    status: u16,
    code: &str,
    case: &str,
) -> Value {
    assert_eq!(response.status(), status, "{case}");
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{case}: content type {content_type:?}"
    );
    let body: Value = response
        .json()
        .await
        .unwrap_or_else(|e| panic!("{case}: not JSON: {e}"));
    assert_eq!(body["success"], false, "{case}: {body}");
    assert_eq!(body["code"], code, "{case}: {body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{case}: {body}"
    );
    body
}

/// Whether a status means the provider has the message.
pub(crate) fn handed_over(status: &str) -> bool {
    matches!(status, "sent" | "delivered" | "read")
}

/// A valid US mobile-style number whose last four digits are `suffix` (the mock's rules).
pub(crate) fn number(suffix: &str) -> String {
    format!("+1415555{suffix}")
}

/// One call to the mock's `send`, as its journal recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Handover {
    /// The mock took the message (`reference` is its provider id).
    Accepted {
        message_id: String,
        reference: String,
        at_ms: i64,
    },
    /// The same id again, answered with the first acceptance: absorbed, but counted.
    Replay { message_id: String, at_ms: i64 },
    /// Refused (or timed out before the mock took it).
    Refused {
        message_id: String,
        at_ms: i64,
        code: String,
        retry_after_ms: i64,
    },
}

impl Handover {
    pub(crate) fn message_id(&self) -> &str {
        match self {
            Handover::Accepted { message_id, .. }
            | Handover::Replay { message_id, .. }
            | Handover::Refused { message_id, .. } => message_id,
        }
    }

    pub(crate) fn at_ms(&self) -> i64 {
        match self {
            Handover::Accepted { at_ms, .. }
            | Handover::Replay { at_ms, .. }
            | Handover::Refused { at_ms, .. } => *at_ms,
        }
    }
}

/// Every call to the mock's `send` in its journal at `path` (and its rotated `path.1`), in
/// order. Lines that are not about a send (receipt progress) and a torn last line are skipped.
pub(crate) fn read_journal(path: &std::path::Path) -> Vec<Handover> {
    let previous = std::path::PathBuf::from(format!("{}.1", path.display()));
    let text = [previous.as_path(), path]
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect::<String>();
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            match f.as_slice() {
                ["A", id, reference, at, _to, _channel] => Some(Handover::Accepted {
                    message_id: (*id).to_owned(),
                    reference: (*reference).to_owned(),
                    at_ms: at.parse().ok()?,
                }),
                ["R", id, _reference, at] => Some(Handover::Replay {
                    message_id: (*id).to_owned(),
                    at_ms: at.parse().ok()?,
                }),
                ["F", id, at, code, retry_after] => Some(Handover::Refused {
                    message_id: (*id).to_owned(),
                    at_ms: at.parse().ok()?,
                    code: (*code).to_owned(),
                    retry_after_ms: retry_after.parse().ok()?,
                }),
                _ => None,
            }
        })
        .collect()
}

/// The mock's acceptances: (message id, provider id, unix ms), in order.
pub(crate) fn read_handover_log(path: &std::path::Path) -> Vec<(String, String, i64)> {
    read_journal(path)
        .into_iter()
        .filter_map(|h| match h {
            Handover::Accepted {
                message_id,
                reference,
                at_ms,
            } => Some((message_id, reference, at_ms)),
            _ => None,
        })
        .collect()
}

/// Hand-overs per message id, counted from the journal: acceptances (more than one for an
/// id is a message sent twice) and replays the mock absorbed (fine for an idempotent
/// provider, but reported).
#[derive(Debug, Default)]
pub(crate) struct HandoverCounts {
    pub(crate) accepted: std::collections::HashMap<String, usize>,
    pub(crate) replays: std::collections::HashMap<String, usize>,
}

impl HandoverCounts {
    pub(crate) fn from_journal(path: &std::path::Path) -> Self {
        let mut counts = Self::default();
        for h in read_journal(path) {
            match h {
                Handover::Accepted { message_id, .. } => {
                    *counts.accepted.entry(message_id).or_default() += 1;
                }
                Handover::Replay { message_id, .. } => {
                    *counts.replays.entry(message_id).or_default() += 1;
                }
                Handover::Refused { .. } => {}
            }
        }
        counts
    }

    /// Ids the provider accepted more than once, with how often.
    pub(crate) fn accepted_twice(&self) -> Vec<(&str, usize)> {
        self.accepted
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, n)| (id.as_str(), *n))
            .collect()
    }

    pub(crate) fn total_replays(&self) -> usize {
        self.replays.values().sum()
    }
}

// ---- Helpers for the queue tests (crash, priority, rate limit) ----

/// Polls `check` every few milliseconds until it yields `Some`, and returns that. Fails the
/// test with `what` (and the last thing `check` saw, via `describe`) after `patience`.
pub(crate) async fn eventually<T, F, Fut>(what: &str, patience: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after {patience:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Bulk items `{phone_number, message, priority}`, one per number, each text distinct.
pub(crate) fn bulk_items(numbers: &[String], priority: &str, tag: &str) -> Vec<Value> {
    numbers
        .iter()
        .map(|n| json!({"phone_number": n, "message": format!("{tag} to {n}"), "priority": priority}))
        .collect()
}

/// Numbers `+1415555` + four digits from `first` on (keep clear of the mock's 0000-0004).
pub(crate) fn numbers_from(first: u32, count: u32) -> Vec<String> {
    (first..first + count)
        .map(|n| number(&format!("{n:04}")))
        .collect()
}

/// POSTs `items` (at most 100) to `base` (`http://host:port`)'s `/send-bulk/` with `key`;
/// asserts 202 and that every item was accepted; returns the message ids in item order.
pub(crate) async fn send_bulk_to(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    items: &[Value],
) -> Vec<String> {
    let response = client
        .post(format!("{base}/api/messaging/send-bulk/"))
        .bearer_auth(key)
        .json(&json!({ "messages": items }))
        .send()
        .await
        .expect("the request is sent");
    assert_eq!(response.status(), 202, "a bulk send is accepted");
    let body: Value = response.json().await.expect("JSON");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), items.len(), "one result per item: {body}");
    results
        .iter()
        .map(|r| {
            assert_eq!(r["success"], true, "every item is accepted: {r}");
            r["message_id"].as_str().expect("a message id").to_owned()
        })
        .collect()
}

impl TestApp {
    /// Sends `items` in bulk requests of 100; returns every message id, in item order.
    pub(crate) async fn send_bulk_ok(&self, items: &[Value]) -> Vec<String> {
        let mut ids = Vec::with_capacity(items.len());
        for chunk in items.chunks(100) {
            ids.extend(send_bulk_to(&self.client, &self.address, &self.api_key, chunk).await);
        }
        ids
    }
}

/// `path` as a TOML string, e.g. for `handover_log = …`.
pub(crate) fn toml_path(path: &std::path::Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// The statuses of a message view's history, oldest first.
pub(crate) fn history_statuses(view: &Value) -> Vec<String> {
    view["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|e| e["status"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Whether a message view's history times never go back.
pub(crate) fn history_in_order(view: &Value) -> bool {
    let times: Vec<&str> = view["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|e| e["at"].as_str().unwrap_or(""))
        .collect();
    // RFC 3339 with fixed milliseconds and `Z`: text order is time order.
    times.windows(2).all(|w| w[0] <= w[1])
}

/// What `/metrics` of the Herald at `base` shows now.
pub(crate) async fn metrics_text(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics answer")
        .text()
        .await
        .expect("metrics text")
}

/// The value of the `/metrics` series `series` (name and labels as printed); 0 when absent.
pub(crate) async fn metric(client: &reqwest::Client, base: &str, series: &str) -> f64 {
    metrics_text(client, base)
        .await
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

/// Runs a check script (Python against a running Herald) to its end; asserts it succeeded
/// and printed `passed` (its count of checks), showing its output otherwise.
pub(crate) async fn run_check_script(mut command: std::process::Command, passed: &str) {
    let output = tokio::task::spawn_blocking(move || command.output().expect("the script runs"))
        .await
        .expect("the script's thread");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(passed), "{stdout}");
}

/// The python of a virtualenv under `target/` with `package` at exactly `version` installed
/// from PyPI (made the first time; reused while the version matches).
pub(crate) fn python_with(venv: &str, package: &str, version: &str) -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(venv);
    let python = venv.join("bin/python");
    let installed = std::process::Command::new(&python)
        .arg("-c")
        .arg(format!(
            "import importlib.metadata as m; print(m.version('{package}'))"
        ))
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == version);
    if !installed {
        let made = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs");
        assert!(made.success(), "python3 -m venv {}", venv.display());
        let requirement = format!("{package}=={version}");
        let pip = std::process::Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", &requirement])
            .status()
            .expect("pip runs");
        assert!(pip.success(), "pip install {requirement} (PyPI)");
    }
    python
}

/// The content type a dashboard or API-page asset must be served with.
pub(crate) fn asset_type(path: &str) -> &'static str {
    if path.ends_with(".css") {
        "text/css"
    } else {
        "text/javascript"
    }
}
