//! Named templates (SPEC §3): the files shipped in `templates/` for every account, plus the
//! account's own, added through the API; and a preview that renders one sample.

use super::campaigns::named_template;
use super::extract::{Auth, JsonBody, PathParam, fields};
use super::{ApiError, AppState};
use crate::billing::measure;
use crate::domain::{Channel, E164, MessageText};
use crate::templates::{Template, TemplateName};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TemplateItem {
    pub name: String,
    pub body: String,
    /// `file` (shipped in templates/, shared by all accounts) or `account` (added here).
    pub source: &'static str,
    pub updated_at: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct TemplateList {
    pub templates: Vec<TemplateItem>,
}

/// Every template the account can use, by name (its own hide a file of the same name).
#[utoipa::path(get, path = "/api/messaging/templates", tag = "templates",
    responses((status = 200, body = TemplateList)), security(("bearer" = [])))]
pub(crate) async fn list_templates(
    State(state): State<AppState>,
    Auth(key): Auth,
) -> Result<Json<TemplateList>, ApiError> {
    let own = state.store().templates(&key.account_id).await?;
    let mut templates: Vec<TemplateItem> = own
        .into_iter()
        .map(|t| TemplateItem {
            name: t.name,
            body: t.body,
            source: "account",
            updated_at: Some(t.updated_at.to_rfc3339()),
        })
        .collect();
    for (name, template) in state.templates().iter() {
        if !templates.iter().any(|t| t.name == name.as_str()) {
            templates.push(TemplateItem {
                name: name.as_str().to_owned(),
                body: template.source().to_owned(),
                source: "file",
                updated_at: None,
            });
        }
    }
    templates.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(TemplateList { templates }))
}

/// One template by name.
#[utoipa::path(get, path = "/api/messaging/templates/{name}", tag = "templates",
    responses((status = 200, body = TemplateItem), (status = 404, description = "not_found")),
    security(("bearer" = [])))]
pub(crate) async fn get_template(
    State(state): State<AppState>,
    Auth(key): Auth,
    PathParam(name): PathParam,
) -> Result<Json<TemplateItem>, ApiError> {
    let parsed = TemplateName::parse(&name).map_err(|_| ApiError::NotFound("template"))?;
    if let Some(t) = state
        .store()
        .template(&key.account_id, parsed.as_str())
        .await?
    {
        return Ok(Json(TemplateItem {
            name: t.name,
            body: t.body,
            source: "account",
            updated_at: Some(t.updated_at.to_rfc3339()),
        }));
    }
    let template = state
        .templates()
        .get(&parsed)
        .ok_or(ApiError::NotFound("template"))?;
    Ok(Json(TemplateItem {
        name: parsed.as_str().to_owned(),
        body: template.source().to_owned(),
        source: "file",
        updated_at: None,
    }))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct NewTemplate {
    /// 1–64 letters, digits, `_` or `-`.
    pub name: String,
    /// Handlebars source.
    pub body: String,
}

/// Add a template to the account (or replace the account's template of that name).
#[utoipa::path(post, path = "/api/messaging/templates", tag = "templates", request_body = NewTemplate,
    responses((status = 201, body = TemplateItem), (status = 400, description = "invalid_field"),
        (status = 422, description = "template_error")),
    security(("bearer" = [])))]
pub(crate) async fn create_template(
    State(state): State<AppState>,
    Auth(key): Auth,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<TemplateItem>), ApiError> {
    let new: NewTemplate = fields(body, "")?;
    let name =
        TemplateName::parse(&new.name).map_err(|e| ApiError::invalid("name", e.to_string()))?;
    Template::compile(&new.body).map_err(|e| ApiError::TemplateError {
        field: "body".to_owned(),
        reason: e.to_string(),
    })?;
    state
        .store()
        .upsert_template(&key.account_id, name.as_str(), &new.body)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TemplateItem {
            name: name.as_str().to_owned(),
            body: new.body,
            source: "account",
            updated_at: Some(crate::domain::Timestamp::now().to_rfc3339()),
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct PreviewRequest {
    /// Handlebars source; or give `template_name`.
    pub template: Option<String>,
    pub template_name: Option<String>,
    /// The sample recipient's variables.
    #[schema(value_type = Option<Object>)]
    pub variables: Option<Map<String, Value>>,
    /// The sample recipient (also the built-in `phone_number` variable).
    pub phone_number: Option<String>,
    /// `sms` (default) or `whatsapp`.
    pub channel: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct PreviewResponse {
    pub text: String,
    /// `GSM-7` or `UCS-2`.
    pub encoding: &'static str,
    pub segments: u32,
    /// Unicode code points.
    pub characters: usize,
    pub cost: f64,
}

/// Render a template for one sample recipient, with its encoding, segments and cost.
#[utoipa::path(post, path = "/api/messaging/templates/preview", tag = "templates",
    request_body = PreviewRequest,
    responses((status = 200, body = PreviewResponse), (status = 422, description = "template_error")),
    security(("bearer" = [])))]
pub(crate) async fn preview_template(
    State(state): State<AppState>,
    Auth(key): Auth,
    JsonBody(body): JsonBody,
) -> Result<Json<PreviewResponse>, ApiError> {
    let request: PreviewRequest = fields(body, "")?;
    let channel = match request.channel.as_deref() {
        None => Channel::Sms,
        Some(c) => Channel::parse(c).ok_or_else(|| {
            ApiError::invalid(
                "channel",
                format!("unknown channel `{c}`; use `sms` or `whatsapp`"),
            )
        })?,
    };
    let template = match (request.template, request.template_name) {
        (Some(source), _) => Template::compile(&source).map_err(|e| ApiError::TemplateError {
            field: "template".to_owned(),
            reason: e.to_string(),
        })?,
        (None, Some(name)) => named_template(&state, &key.account_id, &name).await?,
        (None, None) => {
            return Err(ApiError::MissingField {
                field: "template".to_owned(),
            });
        }
    };
    let phone_number = match request.phone_number.as_deref() {
        None => "+14155550123".to_owned(),
        Some(raw) => E164::parse(raw, state.region_of(&key.account_id))
            .map_err(|e| ApiError::phone("phone_number", &e))?
            .into_string(),
    };
    let text = template
        .render(
            &Map::new(),
            &request.variables.unwrap_or_default(),
            &phone_number,
        )
        .map_err(|e| ApiError::TemplateError {
            field: "variables".to_owned(),
            reason: e.to_string(),
        })?;
    let text = MessageText::parse(text, channel)
        .map_err(|e| ApiError::invalid("template", format!("the rendered message: {e}")))?;
    let segments = measure(channel, text.as_str());
    Ok(Json(PreviewResponse {
        characters: text.as_str().chars().count(),
        encoding: segments.encoding.as_str(),
        segments: segments.count,
        cost: state.pricing().cost(channel, segments).to_f64(),
        text: text.into_string(),
    }))
}
