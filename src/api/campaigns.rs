//! Creating campaigns: seed 004's `POST /create-campaign-send/` and Herald's own
//! `POST /campaigns` (JSON, or a dry run). CSV uploads are in `campaign_upload.rs`; both end
//! in [`launch`]. Reading and steering them is in `campaign_status.rs`.

use super::extract::{Auth, Idempotency, JsonBody, fields};
use super::send::{self, json_response};
use super::{ApiError, AppState};
use crate::campaign::{ListBuilder, ListSummary, NumberRules, Row};
use crate::domain::{AccountId, CampaignId, CampaignStatus, Channel, Priority, Timestamp};
use crate::idempotency::IdempotencyKey;
use crate::store::{
    AcceptOutcome, FinishCampaign, IdempotencyRecord, NewCampaign, Rejection, StagedRecipient,
    StoredResponse,
};
use crate::templates::{Template, TemplateName};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Recipients staged per write: big enough to insert fast, small enough that single sends
/// committed in between never wait long.
pub(crate) const STAGE_CHUNK: usize = 5_000;
const MAX_NAME_CHARS: usize = 200;

/// Settings of a campaign, from a JSON body or an upload's query string.
pub(crate) struct CampaignOptions {
    pub name: String,
    pub template: Template,
    pub defaults: Map<String, Value>,
    pub channel: Channel,
    pub priority: Priority,
    pub sender_id: Option<String>,
    pub scheduled_at: Timestamp,
    pub dry_run: bool,
}

/// The raw option fields, named as seed 004 names them or as Herald does.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct OptionFields {
    #[serde(alias = "campaign_name")]
    pub name: Option<String>,
    #[serde(alias = "message_template")]
    pub template: Option<String>,
    pub template_name: Option<String>,
    pub variables: Option<Map<String, Value>>,
    pub channel: Option<String>,
    pub priority: Option<String>,
    pub sender_id: Option<String>,
    pub scheduled_at: Option<String>,
    pub dry_run: Option<bool>,
    pub use_ai_personalization: Option<bool>,
}

impl OptionFields {
    /// Validates everything but the list. `template_field` names the field a template error
    /// points at (`message_template` in seed 004's endpoint).
    pub(crate) async fn resolve(
        self,
        state: &AppState,
        account: &AccountId,
        (name_field, template_field): (&str, &str),
    ) -> Result<CampaignOptions, ApiError> {
        if self.use_ai_personalization == Some(true) {
            return Err(ApiError::Unsupported(
                "use_ai_personalization is not something Herald does; send it as false".to_owned(),
            ));
        }
        let name = self
            .name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::MissingField {
                field: name_field.to_owned(),
            })?;
        if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                name_field,
                format!("must be at most {MAX_NAME_CHARS} characters, without control characters"),
            ));
        }
        let template = match (self.template, self.template_name) {
            (Some(source), _) => {
                Template::compile(&source).map_err(|e| ApiError::TemplateError {
                    field: template_field.to_owned(),
                    reason: e.to_string(),
                })?
            }
            (None, Some(name)) => named_template(state, account, &name).await?,
            (None, None) => {
                return Err(ApiError::MissingField {
                    field: template_field.to_owned(),
                });
            }
        };
        // The same checks as a single send, so a campaign accepts what send-message does.
        let send::MessageOptions {
            channel,
            priority,
            sender_id,
            due_at: scheduled_at,
        } = send::options(
            self.channel.as_deref(),
            self.priority.as_deref(),
            self.sender_id,
            self.scheduled_at.as_deref(),
            "",
        )?;
        Ok(CampaignOptions {
            name,
            template,
            defaults: self.variables.unwrap_or_default(),
            channel,
            priority,
            sender_id,
            scheduled_at,
            dry_run: self.dry_run.unwrap_or(false),
        })
    }
}

/// A template by name: the account's own first, then the files shipped in `templates/`.
pub(crate) async fn named_template(
    state: &AppState,
    account: &AccountId,
    name: &str,
) -> Result<Template, ApiError> {
    let unknown = || ApiError::invalid("template_name", format!("no template is named `{name}`"));
    let parsed = TemplateName::parse(name).map_err(|_| unknown())?;
    if let Some(stored) = state.store().template(account, parsed.as_str()).await? {
        return Template::compile(&stored.body).map_err(|e| ApiError::TemplateError {
            field: "template_name".to_owned(),
            reason: e.to_string(),
        });
    }
    state.templates().get(&parsed).cloned().ok_or_else(unknown)
}

/// A new list builder for `options`, for the account's numbers and opt-outs.
pub(crate) async fn list_builder(
    state: &AppState,
    account: &AccountId,
    options: &CampaignOptions,
    list_limit: usize,
) -> Result<ListBuilder, ApiError> {
    let opted_out = state.store().opt_out_set(account).await?;
    Ok(ListBuilder::new(
        options.template.clone(),
        options.defaults.clone(),
        options.channel,
        state.pricing().clone(),
        NumberRules {
            region: state.region_of(account),
            reject_fixed_line: state.settings().messaging.reject_fixed_line,
        },
        opted_out,
        list_limit,
    ))
}

/// What creating a campaign answers (seed 004's fields first, then Herald's).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct CampaignCreated {
    pub success: bool,
    /// Null for a dry run.
    pub campaign_id: Option<String>,
    /// `scheduled`, `running`, or `dry_run`.
    pub status: &'static str,
    pub recipients_total: i64,
    pub recipients_accepted: i64,
    #[schema(value_type = Vec<Object>)]
    pub rejected: Vec<Rejection>,
    pub estimated_cost: f64,
    pub estimated_segments: i64,
    pub dry_run: bool,
    /// Every rejected row (`rejected` may list only the first ones).
    pub rejected_count: i64,
    pub rejected_by_code: BTreeMap<String, i64>,
    pub opted_out: i64,
    pub scheduled_at: String,
}

impl CampaignCreated {
    fn new(
        campaign_id: Option<&CampaignId>,
        status: &'static str,
        options: &CampaignOptions,
        summary: ListSummary,
    ) -> Self {
        let t = &summary.totals;
        Self {
            success: true,
            campaign_id: campaign_id.map(ToString::to_string),
            status,
            recipients_total: t.recipients_total,
            recipients_accepted: t.recipients_accepted,
            estimated_cost: t.estimated_cost.to_f64(),
            estimated_segments: t.estimated_segments,
            dry_run: options.dry_run,
            rejected_count: t.rejected,
            opted_out: t.opted_out,
            scheduled_at: options.scheduled_at.to_rfc3339(),
            rejected_by_code: summary.by_code,
            rejected: summary.listed,
        }
    }
}

/// `422 no_valid_recipients`, with the same `rejected` list a success would carry.
fn no_valid_recipients(summary: ListSummary) -> Response {
    let e = ApiError::NoValidRecipients;
    let mut body: Value = serde_json::from_str(&e.body()).unwrap_or_default();
    if let Some(object) = body.as_object_mut() {
        object.insert(
            "rejected".to_owned(),
            serde_json::to_value(&summary.listed).unwrap_or_default(),
        );
        object.insert("rejected_count".to_owned(), summary.totals.rejected.into());
        object.insert(
            "recipients_total".to_owned(),
            summary.totals.recipients_total.into(),
        );
    }
    json_response(e.status(), body.to_string())
}

/// Where a campaign being created stands: nothing written yet (dry run), or staged under
/// a loading campaign that must be finished or discarded.
pub(crate) struct Loading {
    pub campaign_id: CampaignId,
    pending: Vec<StagedRecipient>,
    rejections: Vec<Rejection>,
}

impl Loading {
    /// Writes the campaign row (status `loading`) before the first recipient.
    pub(crate) async fn start(
        state: &AppState,
        account: &AccountId,
        options: &CampaignOptions,
    ) -> Result<Loading, ApiError> {
        let campaign_id = CampaignId::generate();
        state
            .store()
            .insert_campaign(NewCampaign {
                campaign_id: campaign_id.clone(),
                account_id: account.clone(),
                name: options.name.clone(),
                template: options.template.source().to_owned(),
                channel: options.channel,
                priority: options.priority,
                sender_id: options.sender_id.clone(),
                scheduled_at: options.scheduled_at,
            })
            .await?;
        Ok(Loading {
            campaign_id,
            pending: Vec::new(),
            rejections: Vec::new(),
        })
    }

    /// Adds one decided row, writing a chunk when enough have gathered.
    pub(crate) async fn add(&mut self, state: &AppState, row: Row) -> Result<(), ApiError> {
        match row {
            Row::Staged(r) => self.pending.push(r),
            Row::Rejected(r) => self.rejections.push(r),
        }
        if self.pending.len() + self.rejections.len() >= STAGE_CHUNK {
            self.flush(state).await?;
        }
        Ok(())
    }

    pub(crate) async fn flush(&mut self, state: &AppState) -> Result<(), ApiError> {
        if self.pending.is_empty() && self.rejections.is_empty() {
            return Ok(());
        }
        state
            .store()
            .stage_recipients(
                &self.campaign_id,
                std::mem::take(&mut self.pending),
                std::mem::take(&mut self.rejections),
            )
            .await?;
        Ok(())
    }

    /// Deletes what was staged (the request failed or was a replay).
    pub(crate) async fn discard(self, state: &AppState) {
        if let Err(e) = state.store().discard_campaign(&self.campaign_id).await {
            // The sweeper discards abandoned loading campaigns later.
            tracing::warn!(error = %e, campaign_id = %self.campaign_id, "could not discard a campaign");
        }
    }
}

/// Finishes a created campaign: answers a dry run, refuses an empty list, or makes the
/// staged campaign visible and startable (or replays an earlier answer for the same key).
pub(crate) async fn launch(
    state: &AppState,
    account: &AccountId,
    options: &CampaignOptions,
    summary: ListSummary,
    loading: Option<Loading>,
    idempotency: Option<IdempotencyRecord>,
) -> Result<Response, ApiError> {
    let Some(mut loading) = loading else {
        let created = CampaignCreated::new(None, "dry_run", options, summary);
        return Ok(json_response(
            StatusCode::OK,
            serde_json::to_string(&created).unwrap_or_default(),
        ));
    };
    if summary.totals.recipients_accepted == 0 {
        loading.discard(state).await;
        return Ok(no_valid_recipients(summary));
    }
    if let Err(e) = loading.flush(state).await {
        loading.discard(state).await;
        return Err(e);
    }
    let status = if options.scheduled_at > Timestamp::now() {
        CampaignStatus::Scheduled
    } else {
        CampaignStatus::Running
    };
    let totals = summary.totals.clone();
    let created = CampaignCreated::new(
        Some(&loading.campaign_id),
        status.as_str(),
        options,
        summary,
    );
    let response = StoredResponse {
        status: StatusCode::ACCEPTED.as_u16(),
        body: serde_json::to_string(&created).unwrap_or_default(),
    };
    let finished = state
        .store()
        .finish_campaign(FinishCampaign {
            campaign_id: loading.campaign_id.clone(),
            account_id: account.clone(),
            totals,
            status,
            idempotency,
            response,
        })
        .await;
    match finished {
        Ok(outcome @ AcceptOutcome::Done(_)) => Ok(send::respond(outcome, &send::Envelope::Plain)),
        Ok(outcome) => {
            loading.discard(state).await;
            Ok(send::respond(outcome, &send::Envelope::Plain))
        }
        Err(e) => {
            loading.discard(state).await;
            Err(e.into())
        }
    }
}

#[derive(Debug, Deserialize)]
struct ListFields {
    phone_numbers: Option<Vec<Value>>,
    recipients: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
struct RecipientFields {
    phone_number: String,
    variables: Option<Map<String, Value>>,
}

async fn create_from_json(
    state: AppState,
    account: AccountId,
    idempotency: Option<IdempotencyKey>,
    body: Value,
    endpoint: &str,
    field_names: (&str, &str),
) -> Result<Response, ApiError> {
    let record = send::idempotency_record(idempotency, endpoint, &body);
    let options: OptionFields = fields(body.clone(), "")?;
    let list: ListFields = fields(body, "")?;
    let options = options.resolve(&state, &account, field_names).await?;
    let items: Vec<(String, Map<String, Value>)> = match (list.recipients, list.phone_numbers) {
        (Some(recipients), _) => recipients
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let r: RecipientFields = fields(r, &format!("recipients[{i}]."))?;
                Ok((r.phone_number, r.variables.unwrap_or_default()))
            })
            .collect::<Result<_, ApiError>>()?,
        (None, Some(numbers)) => numbers
            .into_iter()
            .enumerate()
            .map(|(i, n)| match n {
                Value::String(s) => Ok((s, Map::new())),
                _ => Err(ApiError::invalid(
                    format!("phone_numbers[{i}]"),
                    "each phone number must be a string",
                )),
            })
            .collect::<Result<_, ApiError>>()?,
        (None, None) => {
            return Err(ApiError::MissingField {
                field: "phone_numbers".to_owned(),
            });
        }
    };
    // A JSON body is bounded by the body limit, so every rejection is listed.
    let mut builder = list_builder(&state, &account, &options, usize::MAX).await?;
    let mut loading = if options.dry_run {
        None
    } else {
        Some(Loading::start(&state, &account, &options).await?)
    };
    for (phone_number, variables) in &items {
        let row = builder.push(phone_number, variables);
        if let Some(l) = loading.as_mut()
            && let Err(e) = l.add(&state, row).await
        {
            if let Some(l) = loading.take() {
                l.discard(&state).await;
            }
            return Err(e);
        }
    }
    let summary = builder.finish();
    launch(&state, &account, &options, summary, loading, record).await
}

/// Seed 004's campaign send: a template, a list, started at once (or at `scheduled_at`).
#[utoipa::path(
    post,
    path = "/api/messaging/create-campaign-send/",
    tag = "campaigns",
    request_body(content = Object, description = "campaign_name, message_template, phone_numbers or recipients, optional variables, priority, scheduled_at, use_ai_personalization"),
    responses(
        (status = 202, body = CampaignCreated),
        (status = 400, description = "invalid_json, missing_field, invalid_field"),
        (status = 422, description = "template_error, no_valid_recipients, unsupported"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create_campaign_send(
    State(state): State<AppState>,
    Auth(key): Auth,
    Idempotency(idempotency): Idempotency,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    create_from_json(
        state,
        key.account_id,
        idempotency,
        body,
        "create-campaign-send",
        ("campaign_name", "message_template"),
    )
    .await
}

/// Create a campaign from JSON (`dry_run: true` validates and prices without sending).
#[utoipa::path(
    post,
    path = "/api/messaging/campaigns",
    tag = "campaigns",
    request_body(content = Object, description = "name, template or template_name, recipients [{phone_number, variables}] or phone_numbers, variables, channel, priority, sender_id, scheduled_at, dry_run"),
    responses(
        (status = 200, description = "dry run", body = CampaignCreated),
        (status = 202, body = CampaignCreated),
        (status = 422, description = "template_error, no_valid_recipients"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create_campaign(
    State(state): State<AppState>,
    Auth(key): Auth,
    Idempotency(idempotency): Idempotency,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    create_from_json(
        state,
        key.account_id,
        idempotency,
        body,
        "campaigns",
        ("name", "template"),
    )
    .await
}
