//! `POST /campaigns/upload`: a campaign from a CSV list, streamed.
//!
//! The body is read as it arrives and parsed on a blocking thread (the `csv` crate is
//! synchronous); decided rows travel to the async side in chunks and are staged as they
//! come, so memory holds one chunk and the set of numbers seen (16 bytes each), however
//! large the upload. The campaign stays invisible (`loading`) until the last row is in;
//! an upload that fails halfway leaves nothing behind.

use super::campaigns::{self, Loading, OptionFields};
use super::extract::{Auth, Idempotency};
use super::{ApiError, AppState};
use crate::campaign::{ListBuilder, ListSummary, REJECTIONS_LISTED, Row};
use crate::store::IdempotencyRecord;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use futures::TryStreamExt;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::io::Read;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

const SEND_CSV: &str = "send the list as CSV with `Content-Type: text/csv`";
/// Rows per chunk sent from the parser to the stager.
const CHUNK_ROWS: usize = 2_000;

/// The campaign's settings, in the query string (the body is the list).
#[derive(Debug, Deserialize, serde::Serialize)]
pub(crate) struct UploadQuery {
    name: Option<String>,
    template: Option<String>,
    template_name: Option<String>,
    /// Defaults for every recipient, as a JSON object.
    variables: Option<String>,
    channel: Option<String>,
    priority: Option<String>,
    sender_id: Option<String>,
    scheduled_at: Option<String>,
    dry_run: Option<bool>,
}

/// Why reading the upload stopped.
enum UploadError {
    TooLarge(u64),
    TooManyRows(i64),
    Unreadable(String),
    Csv(String),
}

impl From<UploadError> for ApiError {
    fn from(e: UploadError) -> Self {
        match e {
            UploadError::TooLarge(max) => ApiError::PayloadTooLarge {
                max: usize::try_from(max).unwrap_or(usize::MAX),
            },
            UploadError::TooManyRows(max) => ApiError::invalid(
                "csv",
                format!("the list has more than {max} rows (campaigns.max_recipients)"),
            ),
            UploadError::Unreadable(why) => ApiError::invalid("csv", why),
            UploadError::Csv(why) => ApiError::invalid("csv", why),
        }
    }
}

/// The longest row accepted. The CSV parser holds a whole row in memory, so without this
/// one endless quoted field could make it hold the whole upload.
const MAX_ROW_BYTES: u64 = 64 * 1024;

/// Counts, limits and fingerprints the bytes as the parser reads them.
struct Metered<R> {
    inner: R,
    read: u64,
    max: u64,
    hash: Sha256,
    /// Inside a quoted field (quotes toggle; an escaped `""` toggles twice).
    quoted: bool,
    /// Bytes since the last row ended (a newline outside quotes).
    row: u64,
}

impl<R> Metered<R> {
    fn new(inner: R, max: u64) -> Self {
        Self {
            inner,
            read: 0,
            max,
            hash: Sha256::new(),
            quoted: false,
            row: 0,
        }
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let bytes = buf.get(..n).unwrap_or_default();
        self.read += n as u64;
        if self.read > self.max {
            return Err(std::io::Error::other(Refused::TooLarge));
        }
        for &b in bytes {
            match b {
                b'"' => self.quoted = !self.quoted,
                b'\n' if !self.quoted => self.row = 0,
                _ => {}
            }
            self.row += 1;
            if self.row > MAX_ROW_BYTES {
                return Err(std::io::Error::other(Refused::RowTooLong));
            }
        }
        self.hash.update(bytes);
        Ok(n)
    }
}

/// Why `Metered` stopped reading.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("the upload is too large")]
    TooLarge,
    #[error("a row is longer than 64 KiB (an unclosed quote?)")]
    RowTooLong,
}

fn io_error(e: &std::io::Error, max: u64) -> UploadError {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Refused>())
    {
        Some(Refused::TooLarge) => UploadError::TooLarge(max),
        Some(Refused::RowTooLong) => UploadError::Csv(Refused::RowTooLong.to_string()),
        None => UploadError::Unreadable(format!("the upload could not be read: {e}")),
    }
}

/// Parses the CSV in `reader`, deciding each row with `builder` and sending the decisions
/// in chunks. Returns the summary and the body's SHA-256.
fn parse<R: Read>(
    reader: Metered<R>,
    mut builder: ListBuilder,
    max_rows: i64,
    rows_out: Option<mpsc::Sender<Vec<Row>>>,
) -> Result<(ListSummary, [u8; 32]), UploadError> {
    let max_bytes = reader.max;
    let mut csv = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::Headers)
        .from_reader(reader);
    let headers = csv
        .byte_headers()
        .map_err(|e| csv_error(e, max_bytes))?
        .clone();
    let names: Vec<String> = headers
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_owned())
        .collect();
    let phone_column = names
        .iter()
        .position(|n| n.eq_ignore_ascii_case("phone_number"))
        .ok_or_else(|| {
            UploadError::Csv(
                "the first row must name the columns, one of them `phone_number`".to_owned(),
            )
        })?;
    let mut chunk = Vec::with_capacity(CHUNK_ROWS);
    let mut record = csv::ByteRecord::new();
    let mut variables = Map::new();
    while csv
        .read_byte_record(&mut record)
        .map_err(|e| csv_error(e, max_bytes))?
    {
        if builder.totals().recipients_total >= max_rows {
            return Err(UploadError::TooManyRows(max_rows));
        }
        variables.clear();
        let mut phone = "";
        let mut bad_utf8 = false;
        for (i, field) in record.iter().enumerate() {
            let Ok(text) = std::str::from_utf8(field) else {
                bad_utf8 = true;
                continue;
            };
            if i == phone_column {
                phone = text;
            } else if let Some(name) = names.get(i)
                && !name.is_empty()
                && !text.is_empty()
            {
                variables.insert(name.clone(), Value::String(text.to_owned()));
            }
        }
        // Text that is not UTF-8 cannot be rendered faithfully; the number check refuses
        // the row (an empty number) rather than sending mangled text.
        let row = if bad_utf8 {
            builder.push("", &Map::new())
        } else {
            builder.push(phone, &variables)
        };
        if let Some(out) = &rows_out {
            chunk.push(row);
            if chunk.len() >= CHUNK_ROWS {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ROWS));
                if out.blocking_send(full).is_err() {
                    return Err(UploadError::Unreadable(
                        "the upload was abandoned".to_owned(),
                    ));
                }
            }
        }
    }
    if let Some(out) = &rows_out
        && !chunk.is_empty()
        && out.blocking_send(chunk).is_err()
    {
        return Err(UploadError::Unreadable(
            "the upload was abandoned".to_owned(),
        ));
    }
    let hash = csv.into_inner().hash.finalize().into();
    Ok((builder.finish(), hash))
}

fn csv_error(e: csv::Error, max_bytes: u64) -> UploadError {
    let line = e.position().map(|p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io_error(&io, max_bytes),
        other => UploadError::Csv(match line {
            Some(line) => format!("the CSV is malformed at line {line}: {other:?}"),
            None => format!("the CSV is malformed: {other:?}"),
        }),
    }
}

/// Create a campaign from a CSV list: a header row with `phone_number` and one column per
/// variable. Settings go in the query string; `dry_run=true` validates and prices only.
#[utoipa::path(
    post,
    path = "/api/messaging/campaigns/upload",
    tag = "campaigns",
    request_body(content = String, content_type = "text/csv", description = "phone_number,name,…"),
    params(
        ("name" = String, Query), ("template" = Option<String>, Query),
        ("template_name" = Option<String>, Query),
        ("variables" = Option<String>, Query, description = "JSON object of defaults"),
        ("channel" = Option<String>, Query), ("priority" = Option<String>, Query),
        ("sender_id" = Option<String>, Query), ("scheduled_at" = Option<String>, Query),
        ("dry_run" = Option<bool>, Query),
    ),
    responses(
        (status = 200, description = "dry run", body = campaigns::CampaignCreated),
        (status = 202, body = campaigns::CampaignCreated),
        (status = 400, description = "invalid_field (csv), missing_field"),
        (status = 413, description = "payload_too_large"),
        (status = 415, description = "unsupported_media_type"),
        (status = 422, description = "template_error, no_valid_recipients"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn upload_campaign(
    State(state): State<AppState>,
    Auth(key): Auth,
    Idempotency(idempotency): Idempotency,
    headers: HeaderMap,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let is_csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "text/csv" || mime == "application/csv"
        });
    if !is_csv {
        return Err(ApiError::UnsupportedMediaType(SEND_CSV));
    }
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let settings_json = serde_json::to_string(&query).unwrap_or_default();
    let variables = match query.variables.as_deref() {
        None => None,
        Some(raw) => Some(
            serde_json::from_str::<Map<String, Value>>(raw)
                .map_err(|_| ApiError::invalid("variables", "must be a JSON object"))?,
        ),
    };
    let fields = OptionFields {
        name: query.name,
        template: query.template,
        template_name: query.template_name,
        variables,
        channel: query.channel,
        priority: query.priority,
        sender_id: query.sender_id,
        scheduled_at: query.scheduled_at,
        dry_run: query.dry_run,
        use_ai_personalization: None,
    };
    let account = key.account_id;
    let options = fields
        .resolve(&state, &account, ("name", "template"))
        .await?;
    let builder = campaigns::list_builder(&state, &account, &options, REJECTIONS_LISTED).await?;
    let mut loading = if options.dry_run {
        None
    } else {
        Some(Loading::start(&state, &account, &options).await?)
    };

    let campaigns_cfg = &state.settings().campaigns;
    let metered = Metered::new(
        SyncIoBridge::new(StreamReader::new(
            body.into_data_stream().map_err(std::io::Error::other),
        )),
        campaigns_cfg.max_upload_bytes,
    );
    let max_rows = campaigns_cfg.max_recipients;
    let (tx, mut rx) = mpsc::channel::<Vec<Row>>(2);
    let rows_out = loading.is_some().then_some(tx);
    let parser = tokio::task::spawn_blocking(move || parse(metered, builder, max_rows, rows_out));

    let mut staging: Result<(), ApiError> = Ok(());
    while let Some(rows) = rx.recv().await {
        if let (Some(l), Ok(())) = (loading.as_mut(), &staging) {
            for row in rows {
                if let Err(e) = l.add(&state, row).await {
                    staging = Err(e);
                    break;
                }
            }
        }
        if staging.is_err() {
            // Dropping the receiver stops the parser at its next chunk.
            break;
        }
    }
    drop(rx);
    let parsed = parser
        .await
        .map_err(|e| ApiError::Unexpected(anyhow::anyhow!("the CSV parser stopped: {e}")));
    let outcome = match (parsed, staging) {
        (Ok(Ok(done)), Ok(())) => Ok(done),
        (_, Err(e)) | (Err(e), _) => Err(e),
        (Ok(Err(e)), Ok(())) => Err(ApiError::from(e)),
    };
    let (summary, body_hash) = match outcome {
        Ok(done) => done,
        Err(e) => {
            if let Some(l) = loading {
                l.discard(&state).await;
            }
            return Err(e);
        }
    };
    let record = idempotency.map(|key| IdempotencyRecord {
        key: key.into_string(),
        request_hash: upload_hash(&settings_json, &body_hash),
    });
    campaigns::launch(&state, &account, &options, summary, loading, record).await
}

/// The request's fingerprint: the settings as given and the list's bytes.
fn upload_hash(settings_json: &str, body_hash: &[u8; 32]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"campaigns/upload\0");
    hash.update(settings_json.as_bytes());
    hash.update([0]);
    hash.update(body_hash);
    hash.finalize().into()
}
