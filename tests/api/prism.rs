//! Stoplight Prism serving a provider's own OpenAPI description (`../shared/specs/`,
//! FAKES.md), for the Twilio and WhatsApp suites: installed on first use, started on a free
//! port per test, stopped on drop; and [`Chooser`], a pass-through that records what Herald
//! sent and lets a test pick Prism's answer with a `Prefer` header.
//!
//! Prism comes from npm: the first test that needs it installs it into `target/prism` with
//! `../shared/fakes/setup_prism.sh` (`.ci/run` does it beforehand), so `cargo test` on a fresh
//! machine needs nothing more than npm. If it cannot be installed these tests fail, saying
//! so: they never skip.

use crate::helpers::eventually;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Prism starts in a few seconds, more on a loaded machine.
const PRISM_START: Duration = Duration::from_secs(90);

/// A Prism process serving one spec on a free loopback port, stopped on drop.
pub(crate) struct Prism {
    child: Child,
    pub(crate) url: String,
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Installs Prism into `target/prism` once per test run, if it is not there yet.
fn install_prism(bin: &std::path::Path) -> Result<(), String> {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            if bin.exists() {
                return Ok(());
            }
            let output = Command::new("bash")
                .arg(repo().join("../shared/fakes/setup_prism.sh"))
                .arg(repo().join("target/prism"))
                .output()
                .map_err(|e| format!("could not run setup_prism.sh: {e}"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&output.stderr).into_owned())
            }
        })
        .clone()
}

/// Starts Prism mocking `spec` (a file name in `../shared/specs/`) and waits until it
/// answers HTTP at all.
pub(crate) async fn start_prism(spec: &str) -> Prism {
    let bin = repo().join("target/prism/node_modules/.bin/prism");
    let installed = tokio::task::spawn_blocking({
        let bin = bin.clone();
        move || install_prism(&bin)
    })
    .await
    .expect("the installer runs");
    assert!(
        installed.is_ok() && bin.exists(),
        "Prism could not be installed at {} ({:?}): run `bash ../shared/fakes/setup_prism.sh \
         target/prism` (needs npm); these tests check Herald against the providers' own API \
         descriptions and do not skip",
        bin.display(),
        installed.err()
    );
    let spec = repo().join("../shared/specs").join(spec);
    assert!(spec.exists(), "the spec {} is missing", spec.display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(&bin)
        .args(["mock", "-h", "127.0.0.1", "-p", &port.to_string()])
        .arg(&spec)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Prism starts");
    let prism = Prism {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    // Any answer (Prism's 404 for an unknown path included) means it is serving.
    let probe = format!("{}/", prism.url);
    eventually("Prism answers", PRISM_START, || {
        let request = client.get(&probe).send();
        async move { request.await.ok().map(|_| ()) }
    })
    .await;
    prism
}

/// One exchange through a [`Chooser`].
#[derive(Debug, Clone)]
pub(crate) struct Exchange {
    /// The body as Herald sent it (before any rewrite).
    pub(crate) sent: Bytes,
    /// Prism's status and body.
    pub(crate) status: u16,
    pub(crate) answer: String,
}

/// Rewrites a body on its way to Prism (see [`Chooser::start_rewriting`]).
pub(crate) type Rewrite = fn(&[u8]) -> Vec<u8>;

/// A pass-through to Prism that adds a `Prefer` header, so Herald's own requests get the
/// answer a test picks (Herald has no reason to send `Prefer` itself), and keeps every
/// exchange.
#[derive(Clone)]
pub(crate) struct Chooser {
    pub(crate) url: String,
    prefer: Arc<Mutex<String>>,
    seen: Arc<Mutex<Vec<Exchange>>>,
}

impl Chooser {
    pub(crate) async fn start(prism: &Prism) -> Chooser {
        Self::start_rewriting(prism, |body| body.to_vec()).await
    }

    /// As [`Chooser::start`], passing each body through `rewrite` first (for a field the
    /// real API takes but the description does not list).
    pub(crate) async fn start_rewriting(prism: &Prism, rewrite: Rewrite) -> Chooser {
        let prefer = Arc::new(Mutex::new(String::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (target, chosen, log) = (prism.url.clone(), Arc::clone(&prefer), Arc::clone(&seen));
        let client = reqwest::Client::new();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, mut headers: HeaderMap, body: Bytes| {
                let (target, chosen, client, log) = (
                    target.clone(),
                    Arc::clone(&chosen),
                    client.clone(),
                    Arc::clone(&log),
                );
                async move {
                    let forwarded = rewrite(&body);
                    // The length changes with a rewrite; reqwest sets it again.
                    headers.remove("content-length");
                    let mut request = client
                        .request(method, format!("{target}{uri}"))
                        .headers(headers)
                        .body(forwarded);
                    let prefer = chosen.lock().unwrap().clone();
                    if !prefer.is_empty() {
                        request = request.header("Prefer", prefer);
                    }
                    let answer = request.send().await.expect("Prism answers");
                    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
                    let headers = answer.headers().clone();
                    let answered = answer.bytes().await.unwrap_or_default();
                    log.lock().unwrap().push(Exchange {
                        sent: body,
                        status: status.as_u16(),
                        answer: String::from_utf8_lossy(&answered).into_owned(),
                    });
                    let mut response: Response = (status, answered).into_response();
                    if let Some(ct) = headers.get("content-type") {
                        response.headers_mut().insert("content-type", ct.clone());
                    }
                    response
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Chooser { url, prefer, seen }
    }

    pub(crate) fn prefer(&self, value: &str) {
        *self.prefer.lock().unwrap() = value.to_owned();
    }

    pub(crate) fn seen(&self) -> Vec<Exchange> {
        self.seen.lock().unwrap().clone()
    }
}
