//! The processes under test (`herald serve`, `herald worker`, the baseline), their
//! sandboxes, CPU accounting from `/proc`, and read access to Herald's SQLite file.

use crate::Args;
use crate::http::{Client, Target};
use anyhow::{Context, bail};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The key every benchmark run registers as the bootstrap account's.
pub(crate) const API_KEY: &str = "bench-3f1c9a7e5b2d4c6a8e0f1b3d5c7a9e2f";

/// Built by Cargo for bench targets, in the bench profile (release settings). `HERALD_BIN`
/// overrides it at run time: to keep one binary through a long series while the tree
/// changes, or to compare two builds.
const HERALD: &str = env!("CARGO_BIN_EXE_herald");

fn herald_binary() -> std::ffi::OsString {
    std::env::var_os("HERALD_BIN").unwrap_or_else(|| HERALD.into())
}

/// How long a process may take to answer `/healthz` after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `herald` may take to drain after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// One run's fresh database folder and port; every process of the run shares them.
pub(crate) struct Sandbox {
    dir: TempDir,
    pub(crate) addr: SocketAddr,
    receipts: bool,
    /// Keep the mock's default delays (5 ms to accept, as a user's `herald serve` has them)
    /// instead of the zero-latency mock of the throughput scenarios.
    mock_defaults: bool,
    /// A configuration file for settings the environment cannot carry (maps keyed by
    /// phone numbers), written into the run's folder.
    config: Option<PathBuf>,
    /// Settings for this run that override the harness's own (`with_env`).
    env: Vec<(&'static str, String)>,
}

impl Sandbox {
    /// Writes `toml` as the run's configuration file, given to every process with
    /// `--config` (the environment's `HERALD__…` values still override it).
    pub(crate) fn with_config(mut self, toml: &str) -> anyhow::Result<Sandbox> {
        let path = self.dir.path().join("herald.toml");
        std::fs::write(&path, toml)?;
        self.config = Some(path);
        Ok(self)
    }

    /// Sets `HERALD__…` `key` for this run's processes, over the harness's value.
    pub(crate) fn with_env(mut self, key: &'static str, value: String) -> Sandbox {
        self.env.push((key, value));
        self
    }

    pub(crate) fn new(args: &Args) -> anyhow::Result<Sandbox> {
        Ok(Sandbox {
            dir: tempfile::Builder::new().prefix("herald-bench-").tempdir()?,
            addr: free_port()?,
            receipts: !args.no_receipts,
            mock_defaults: args.mock_defaults,
            config: None,
            env: Vec::new(),
        })
    }

    /// A sandbox for `herald serve` as a user runs it: the default configuration, mock
    /// delays included. Only what would cap the figure is lifted: the API's per-key request
    /// limit, the bootstrap balance and the daily limit.
    pub(crate) fn user_config(args: &Args) -> anyhow::Result<Sandbox> {
        let mut sandbox = Sandbox::new(args)?;
        sandbox.mock_defaults = true;
        Ok(sandbox)
    }

    pub(crate) fn db_path(&self) -> PathBuf {
        self.dir.path().join("herald.db")
    }

    /// The mock network's journal (beside the database, the default).
    pub(crate) fn journal_path(&self) -> PathBuf {
        self.dir.path().join("mock-network.log")
    }

    pub(crate) fn target(&self) -> Target {
        Target::new(self.addr, API_KEY)
    }

    /// `herald serve` (with `--no-workers` unless `workers`), once it answers `/healthz`.
    pub(crate) async fn serve(&self, workers: bool) -> anyhow::Result<Server> {
        let mut args = vec!["serve"];
        if !workers {
            args.push("--no-workers");
        }
        let server = self.spawn(&args)?;
        server.wait_ready(self.addr).await?;
        Ok(server)
    }

    /// `herald worker`: delivery only, no HTTP. Returns as soon as it is started.
    pub(crate) fn worker(&self) -> anyhow::Result<Server> {
        self.spawn(&["worker"])
    }

    /// `herald worker` with settings of its own over the run's (several workers of one run,
    /// each with its own mock journal): its log is `<name>.log` in the run's folder.
    pub(crate) fn worker_with(
        &self,
        name: &str,
        env: &[(&'static str, String)],
    ) -> anyhow::Result<Server> {
        self.spawn_named(name, &["worker"], env)
    }

    /// `herald migrate`, waited for: once before the processes of a run on PostgreSQL start,
    /// as the README says. Waits without blocking the runtime (a proxy on it may be what
    /// `migrate` talks to).
    pub(crate) async fn migrate(&self) -> anyhow::Result<()> {
        let mut server = self.spawn(&["migrate"])?;
        let started = Instant::now();
        loop {
            if let Some(status) = server.child.try_wait()? {
                if !status.success() {
                    bail!("herald migrate exited with {status}{}", server.log_tail());
                }
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                bail!(
                    "herald migrate did not finish within {READY_TIMEOUT:?}{}",
                    server.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A file in the run's folder (a worker's own mock journal, say).
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spawn(&self, args: &[&str]) -> anyhow::Result<Server> {
        self.spawn_named(&args.join("-"), args, &[])
    }

    fn spawn_named(
        &self,
        name: &str,
        args: &[&str],
        extra_env: &[(&'static str, String)],
    ) -> anyhow::Result<Server> {
        let log_path = self.dir.path().join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let binary = herald_binary();
        let mut command = Command::new(&binary);
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        let child = command
            .args(args)
            .envs(self.env())
            .envs(extra_env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("could not start {}", binary.to_string_lossy()))?;
        Ok(Server {
            child,
            log: Some(log_path),
        })
    }

    /// The setup: SQLite defaults, zero-latency mock (unless `--mock-defaults`: then
    /// the mock's default 5 ms to accept), no rate limits that could cap a figure. Anything else comes from the caller's `HERALD__…` environment, inherited.
    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (
                "HERALD__DATABASE__URL",
                format!("sqlite://{}", self.db_path().display()),
            ),
            ("HERALD__SERVER__LISTEN", self.addr.to_string()),
            ("HERALD__AUTH__BOOTSTRAP_API_KEY", API_KEY.to_owned()),
            (
                "HERALD__LIMITS__API_REQUESTS_PER_SECOND",
                "1000000".to_owned(),
            ),
            ("HERALD__LIMITS__API_BURST", "1000000".to_owned()),
            ("HERALD__LIMITS__ACCOUNT_PER_MINUTE", "0".to_owned()),
            ("HERALD__PROVIDERS__MOCK__SENDER_PER_SECOND", "0".to_owned()),
            // A run sends more than the default balance (1,000 USD ≈ 133k SMS) and daily
            // limit (1M) allow; neither should be what stops a benchmark.
            (
                "HERALD__ACCOUNTS__BOOTSTRAP_BALANCE",
                "1000000000".to_owned(),
            ),
            ("HERALD__ACCOUNTS__DAILY_LIMIT", "1000000000".to_owned()),
        ];
        if !self.mock_defaults {
            env.push(("HERALD__PROVIDERS__MOCK__ACCEPT_DELAY_MS", "0".to_owned()));
        }
        if !self.receipts {
            // Due in a day: scheduled, never applied while the run lasts.
            env.push((
                "HERALD__PROVIDERS__MOCK__DELIVER_AFTER_MS",
                "86400000".to_owned(),
            ));
        }
        env.extend(self.env.iter().cloned());
        env
    }

    /// A read-only connection to the run's database (WAL: it never blocks Herald's writer).
    pub(crate) async fn db(&self) -> anyhow::Result<Db> {
        let options = SqliteConnectOptions::new()
            .filename(self.db_path())
            .read_only(true);
        let conn = SqliteConnection::connect_with(&options)
            .await
            .context("could not open the benchmark database")?;
        Ok(Db { conn })
    }
}

/// The baseline server: this bench binary again, with `--baseline-server`.
pub(crate) async fn start_baseline() -> anyhow::Result<(Server, Target)> {
    let addr = free_port()?;
    let child = Command::new(std::env::current_exe()?)
        .arg("--baseline-server")
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("could not start the baseline server")?;
    let server = Server { child, log: None };
    server.wait_ready(addr).await?;
    Ok((server, Target::new(addr, API_KEY)))
}

/// A loopback port nobody listens on right now (the child binds it a moment later).
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A child process under test; killed if dropped while running.
pub(crate) struct Server {
    child: Child,
    log: Option<PathBuf>,
}

impl Server {
    async fn wait_ready(&self, addr: SocketAddr) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            if let Ok(mut client) = Client::connect(Target::new(addr, API_KEY)).await
                && let Ok((status, _)) = client.get("/healthz").await
                && status.is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!(
            "the server did not answer on {addr} within {READY_TIMEOUT:?}{}",
            self.log_tail()
        )
    }

    /// CPU seconds (user + system) the process has used so far.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&format!("/proc/{}/stat", self.child.id()))
    }

    /// Bytes the process has caused to be written to storage so far (`write_bytes` of
    /// `/proc/<pid>/io`: the WAL, the database and its checkpoints, not sockets); 0 when
    /// unreadable.
    pub(crate) fn written_bytes(&self) -> f64 {
        self.proc_field("io", "write_bytes:").unwrap_or(0.0)
    }

    /// The process's peak resident memory so far (`VmHWM`), in MB; NaN when unreadable.
    pub(crate) fn peak_rss_mb(&self) -> f64 {
        self.memory_mb("VmHWM:")
    }

    /// The process's resident memory now (`VmRSS`), in MB; NaN when unreadable.
    pub(crate) fn rss_mb(&self) -> f64 {
        self.memory_mb("VmRSS:")
    }

    /// Of the resident memory now, what the heap and other private memory hold (`RssAnon`)
    /// and what mapped files hold (`RssFile`: the binary's pages as they are first run,
    /// SQLite's shared WAL index), in MB: a soak tells growth that is a leak from growth
    /// that is code and caches being touched for the first time.
    pub(crate) fn rss_split_mb(&self) -> (f64, f64) {
        (self.memory_mb("RssAnon:"), self.memory_mb("RssFile:"))
    }

    fn memory_mb(&self, field: &str) -> f64 {
        self.proc_field("status", field)
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }

    /// The number on the line that starts with `field` in `/proc/<pid>/<file>` (a trailing
    /// unit such as `kB` dropped); None when unreadable.
    fn proc_field(&self, file: &str, field: &str) -> Option<f64> {
        let text = std::fs::read_to_string(format!("/proc/{}/{file}", self.child.id())).ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
    }

    /// The process id (for profiling it from outside).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the graceful drain (workers finish, writer commits).
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("could not signal the server");
        }
        let started = Instant::now();
        while started.elapsed() < STOP_TIMEOUT {
            if let Some(exit) = self.child.try_wait()? {
                if !exit.success() {
                    bail!("the server exited with {exit}{}", self.log_tail());
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("the server did not stop within {STOP_TIMEOUT:?} of SIGTERM")
    }

    /// SIGKILL: no drain, no final commit. What was answered 202 must still be there.
    pub(crate) fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Where the process writes its log (it outlives the process, inside the run's folder).
    pub(crate) fn log_path(&self) -> Option<PathBuf> {
        self.log.clone()
    }

    fn log_tail(&self) -> String {
        let Some(text) = self
            .log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
        else {
            return String::new();
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("; its log ends:\n{tail}")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU seconds of this process (the load generator), for showing it is not the bottleneck.
pub(crate) fn own_cpu_seconds() -> f64 {
    cpu_seconds("/proc/self/stat")
}

/// utime + stime from a `/proc/<pid>/stat` file; 0 when unreadable (not Linux).
pub(crate) fn cpu_seconds(stat_path: &str) -> f64 {
    // Clock ticks per second: 100 on every Linux architecture Rust targets by default
    // (USER_HZ); reading it properly would need libc for sysconf.
    const TICKS_PER_SECOND: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string(stat_path) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces, so count fields after its closing paren:
    // there, field 3 (state) is index 0, utime (14) index 11 and stime (15) index 12.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND
}

/// Read access to a run's SQLite file.
pub(crate) struct Db {
    conn: SqliteConnection,
}

impl Db {
    /// Messages waiting for delivery or being delivered: the queue's depth. The condition
    /// is the partial index `message_ready`'s own, so this counts index entries only.
    pub(crate) async fn backlog(&mut self) -> anyhow::Result<u64> {
        self.count("SELECT COUNT(*) FROM message WHERE status IN ('queued', 'sending')")
            .await
    }

    /// Messages that reached `delivered` (a full scan: only after the load).
    pub(crate) async fn delivered(&mut self) -> anyhow::Result<u64> {
        self.count("SELECT COUNT(*) FROM message WHERE status = 'delivered'")
            .await
    }

    /// Every stored inbound message (a full scan: only after the load).
    pub(crate) async fn inbound(&mut self) -> anyhow::Result<u64> {
        self.count("SELECT COUNT(*) FROM inbound_message").await
    }

    /// Every stored message (a full scan: only after the load).
    /// The bootstrap account's id (the only account in a run).
    pub(crate) async fn account_id(&mut self) -> anyhow::Result<String> {
        Ok(sqlx::query_scalar("SELECT account_id FROM account LIMIT 1")
            .fetch_one(&mut self.conn)
            .await?)
    }

    pub(crate) async fn messages(&mut self) -> anyhow::Result<u64> {
        self.count("SELECT COUNT(*) FROM message").await
    }

    /// Messages that ended without being sent (a full scan: only after the load).
    pub(crate) async fn unsent(&mut self) -> anyhow::Result<u64> {
        self.count(
            "SELECT COUNT(*) FROM message \
             WHERE status IN ('failed', 'expired', 'undelivered', 'canceled')",
        )
        .await
    }

    /// Whether every recipient of a launched campaign has been expanded into a message (the
    /// fan-out checkpoint reached the list's last row).
    pub(crate) async fn fanned_out(&mut self, campaign_id: &str) -> anyhow::Result<bool> {
        let done: Option<i64> = sqlx::query_scalar(
            "SELECT status <> 'loading' AND fanned_out >= last_seq \
             FROM campaign WHERE campaign_id = ?1",
        )
        .bind(campaign_id)
        .fetch_optional(&mut self.conn)
        .await?;
        Ok(done.context("the campaign is not in the database")? != 0)
    }

    /// A campaign's recipients not yet handed to the provider (nor failed): rows not yet
    /// expanded plus its queued and sending messages. Counted on the partial index
    /// `message_campaign`, so it costs the campaign's queue, not the table.
    pub(crate) async fn campaign_pending(&mut self, campaign_id: &str) -> anyhow::Result<u64> {
        let pending: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(last_seq - fanned_out, 0) + \
                 (SELECT COUNT(*) FROM message \
                  WHERE campaign_id = ?1 AND status IN ('queued', 'sending')) \
             FROM campaign WHERE campaign_id = ?1",
        )
        .bind(campaign_id)
        .fetch_optional(&mut self.conn)
        .await?;
        Ok(u64::try_from(
            pending.context("the campaign is not in the database")?,
        )?)
    }

    /// Every event in the log (a full scan: only after the load).
    pub(crate) async fn events(&mut self) -> anyhow::Result<u64> {
        self.count("SELECT COUNT(*) FROM event").await
    }

    /// Messages not yet at a final status (a full scan: only after the load). With the
    /// mock's read receipts on, `read` is where a delivered message ends.
    pub(crate) async fn unfinished(&mut self) -> anyhow::Result<u64> {
        self.count(
            "SELECT COUNT(*) FROM message WHERE status IN ('queued', 'sending', 'sent', 'delivered')",
        )
        .await
    }

    /// Webhook deliveries not yet done (the partial index's own condition).
    /// Deliveries still to make: pending rows, and events an account's webhook has not
    /// taken from the log yet (where webhooks read it by cursor).
    pub(crate) async fn pending_deliveries(&mut self) -> anyhow::Result<u64> {
        let rows = self
            .count("SELECT COUNT(*) FROM webhook_delivery WHERE state = 'pending'")
            .await?;
        let by_cursor = self
            .count("SELECT COUNT(*) FROM sqlite_master WHERE name = 'webhook_cursor'")
            .await?;
        if by_cursor == 0 {
            return Ok(rows);
        }
        let unread = self
            .count(
                "SELECT COUNT(*) FROM event AS e JOIN account AS a ON a.account_id = e.account_id \
                 WHERE e.event_seq > (SELECT event_seq FROM webhook_cursor WHERE id = 1) \
                   AND a.webhook_url IS NOT NULL AND a.webhook_enabled = 1 \
                   AND e.event_seq > a.webhook_from_seq",
            )
            .await?;
        Ok(rows + unread)
    }

    async fn count(&mut self, sql: &'static str) -> anyhow::Result<u64> {
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut self.conn).await?;
        Ok(u64::try_from(n)?)
    }
}

/// The binary under test and when it was built, for the record.
pub(crate) fn herald_description() -> String {
    let binary = herald_binary();
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .ok()
        .map(|t| {
            chrono::DateTime::<chrono::Utc>::from(t)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        });
    format!(
        "{} (built {})",
        binary.to_string_lossy(),
        built.unwrap_or_else(|| "?".to_owned())
    )
}
