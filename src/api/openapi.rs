//! `/openapi.json`: every endpoint, described from the handlers' own annotations, then made
//! a contract by [`contract`]: what holds for every operation (auth, rate limits, the one
//! error shape, path parameters) and what decides whether a value is valid (patterns,
//! formats, enums) is added here, once, so no handler can forget it. `.ci/contract` runs
//! schemathesis against the result.

use super::AppState;
use crate::config::Settings;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "Self-hosted bulk SMS and WhatsApp dispatch. Errors have one shape: \
            `{\"success\": false, \"error\": \"<sentence>\", \"code\": \"<snake_case>\", \"field\": \"<when one field is at fault>\"}`."
    ),
    paths(
        super::messages::send_message,
        super::messages::message_status,
        super::bulk::send_bulk,
        super::phone::validate_phone,
        super::account::balance,
        super::compat_odoo::sms_send,
        super::compat_odoo::sms_status,
        super::campaigns::create_campaign_send,
        super::stats::stats,
        super::overview::overview,
        super::campaigns::create_campaign,
        super::campaign_upload::upload_campaign,
        super::campaign_status::list_campaigns,
        super::campaign_status::get_campaign,
        super::campaign_status::pause_campaign,
        super::campaign_status::resume_campaign,
        super::campaign_status::cancel_campaign,
        super::campaign_status::campaign_rejections,
        super::campaign_status::campaign_replies,
        super::templates::list_templates,
        super::templates::get_template,
        super::templates::create_template,
        super::templates::preview_template,
        super::opt_outs::list_opt_outs,
        super::opt_outs::add_opt_out,
        super::opt_outs::remove_opt_out,
        super::inbox::sms_receive,
        super::inbox::sms_threads,
        super::inbox::message_read,
        super::inbox::unread_count,
        super::inbox::list_threads,
        super::inbox::thread_messages,
        super::inbox::get_keyword_replies,
        super::inbox::put_keyword_replies,
        super::providers::list_providers,
        super::providers::get_provider,
        super::providers::put_provider,
        super::providers::delete_provider,
        super::webhook_endpoint::get_webhook,
        super::webhook_endpoint::put_webhook,
        super::webhook_endpoint::delete_webhook,
        super::webhook_endpoint::rotate_secret,
        super::webhook_endpoint::list_deliveries,
        super::webhook_endpoint::get_delivery,
        super::webhook_endpoint::retry_delivery,
        super::events::stream_events,
        super::search::search_messages,
        super::search::export_campaign,
    ),
    modifiers(&BearerAuth)
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub(crate) async fn openapi_json(State(state): State<AppState>) -> Response {
    let body = serde_json::to_string(&contract(state.settings())).unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The document as served: the annotations plus the rules below. Built per request (it is
/// small, and the limits it states come from the settings).
pub(crate) fn contract(settings: &Settings) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    add_components(&mut doc);
    add_field_rules(&mut doc, settings);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                if let Some(op) = op.as_object_mut() {
                    complete_operation(path, method, op, settings);
                }
            }
        }
    }
    doc
}

/// Crockford base32 as the `ulid` crate reads it (either case; no I, L, O or U).
const ULID: &str = "[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}";
/// Unicode category Cc, which a message may not contain except `\n`, `\r` and `\t`.
const NOT_CONTROL_EXCEPT_NEWLINES: &str =
    "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]+$";
/// What a phone number may look like as typed (digits, `+`, spaces, `()./-`, letters for
/// vanity numbers and extensions): a superset of what parses. Whether digits of that shape
/// are an assigned number only the numbering plan knows, which no pattern can say.
const PHONE_INPUT: &str = "^[0-9A-Za-z +().\\-/]*[0-9][0-9A-Za-z +().\\-/]*$";
/// E.164, as Herald answers every number.
const E164: &str = "^\\+[1-9][0-9]{1,14}$";
/// An http(s) URL without whitespace or control characters.
const URL: &str = "^https?://[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000]*$";
/// Something besides white space.
const NOT_BLANK: &str = "^[\\s\\S]*[^\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][\\s\\S]*$";
/// A campaign name: no control characters, and something besides white space.
const NAME: &str = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000][^\\u0000-\\u001F\\u007F-\\u009F]*$";

fn message_id() -> Value {
    json!({"type": "string", "pattern": format!("^msg_{ULID}$"), "example": "msg_01JDZ8K5Q6V0X3M2N4P7R9S1T2"})
}

fn campaign_id() -> Value {
    json!({"type": "string", "pattern": format!("^cmp_{ULID}$"), "example": "cmp_01JDZ8K5Q6V0X3M2N4P7R9S1T2"})
}

fn phone_input() -> Value {
    json!({
        "type": "string", "maxLength": crate::domain::phone::MAX_INPUT_CHARS, "pattern": PHONE_INPUT,
        "example": "+14155550123",
        "description": "E.164 (`+14155550123`) or a national format of the account's region \
            (`(415) 555-0123`). A number of this shape that the numbering plan does not \
            assign is refused with 400 invalid_phone_number."
    })
}

/// Every region Herald reads numbers for, in either case (`Region::parse` takes `gb` too).
fn region() -> Value {
    // Every two-letter code `Region::parse` takes, so the pattern and the parser agree.
    let mut codes: Vec<String> = Vec::new();
    for a in b'A'..=b'Z' {
        for b in b'A'..=b'Z' {
            let code = [a, b];
            if let Ok(text) = std::str::from_utf8(&code)
                && crate::domain::Region::parse(text).is_ok()
            {
                let (a, b) = (char::from(a), char::from(b));
                codes.push(format!(
                    "[{a}{}][{b}{}]",
                    a.to_ascii_lowercase(),
                    b.to_ascii_lowercase()
                ));
            }
        }
    }
    codes.sort();
    codes.dedup();
    json!({
        "type": "string", "pattern": format!("^(?:{})$", codes.join("|")), "example": "US",
        "description": "ISO 3166-1 alpha-2 code of a region with a calling code, any case"
    })
}

/// Handlebars source: not blank, and not longer than the engine takes. Whether it compiles
/// only the engine can say (422 template_error).
fn template_source() -> Value {
    json!({
        "type": "string", "maxLength": crate::templates::MAX_TEMPLATE_CHARS, "pattern": NOT_BLANK,
        "description": "Handlebars; one that does not compile is 422 template_error"
    })
}

fn template_name() -> Value {
    json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "example": "welcome"})
}

/// A template named in a request: read only when no `template` source is given, and then
/// 400 invalid_field unless the account or the shipped files have it.
fn template_reference() -> Value {
    json!({"type": "string", "example": "welcome",
        "description": "A template's name; ignored when `template` is given, otherwise one the account or Herald's files have (400 invalid_field if not)"})
}

fn priority() -> Value {
    json!({"type": "string", "enum": ["low", "normal", "high", "urgent"], "default": "normal"})
}

fn channel() -> Value {
    json!({"type": "string", "enum": ["sms", "whatsapp"], "default": "sms"})
}

fn sender_id() -> Value {
    json!({"type": "string", "pattern": "^[A-Za-z0-9+ ]{1,16}$"})
}

fn scheduled_at() -> Value {
    json!({
        "type": "string", "format": "date-time",
        "description": "RFC 3339; now when absent or past; at most 366 days ahead (400 invalid_field beyond)"
    })
}

fn url() -> Value {
    json!({"type": "string", "maxLength": 2048, "pattern": URL})
}

fn message_text(max: usize) -> Value {
    json!({
        "type": "string", "minLength": 1, "maxLength": max, "pattern": NOT_CONTROL_EXCEPT_NEWLINES,
        "description": "At most 1,600 characters (code points) for SMS, 4,096 for WhatsApp; \
            no control characters but newline, carriage return and tab"
    })
}

/// A message over 1,600 characters is valid only when it goes by WhatsApp.
fn sms_length_rule() -> Value {
    json!([
        {"properties": {"message": {"maxLength": 1600}}},
        {"required": ["channel"], "properties": {"channel": {"const": "whatsapp"}}}
    ])
}

/// A WhatsApp template reference, with the limits `WhatsappTemplate::parse` enforces.
fn whatsapp_template() -> Value {
    nullable(json!({
        "type": "object", "required": ["name", "language"],
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z0-9_]{1,512}$", "example": "order_update",
                "description": "The template's name as approved in WhatsApp Manager"},
            "language": {"type": "string", "pattern": "^[a-z]{2,3}(_[A-Z]{2})?$", "example": "en_US",
                "description": "The language code of the approved translation (`en`, `en_US`, `pt_BR`)"},
            "variables": nullable(json!({
                "type": "array", "maxItems": crate::domain::whatsapp_template::VARIABLES_MAX,
                "items": {"type": "string", "maxLength": crate::domain::whatsapp_template::VARIABLE_MAX, "pattern": NAME},
                "description": "Values of the body's {{1}}, {{2}}, … in order: not blank, no line breaks, tabs or other control characters"
            }))
        },
        "description": "Send as this approved WhatsApp template (channel `whatsapp` only, not with `attachment_url`); `message` is then Herald's copy of the text, not sent"
    }))
}

/// A template only on WhatsApp: absent, null, or the channel says `whatsapp`.
fn whatsapp_template_rule() -> Value {
    json!([
        {"not": given("whatsapp_template", json!({"type": "object"}))},
        {"required": ["channel"], "properties": {"channel": {"const": "whatsapp"}}}
    ])
}

/// A template and an attachment together (refused: template headers are not filled yet).
fn whatsapp_template_with_attachment() -> Value {
    json!({
        "required": ["whatsapp_template", "attachment_url"],
        "properties": {"whatsapp_template": {"type": "object"}, "attachment_url": {"type": "string"}}
    })
}

/// A WhatsApp media message whose text (its caption) is over Meta's 1,024 characters.
fn whatsapp_caption_too_long() -> Value {
    json!({
        "required": ["channel", "attachment_url", "message"],
        "properties": {
            "channel": {"const": "whatsapp"},
            "attachment_url": {"type": "string"},
            "message": {"type": "string", "minLength": 1025}
        }
    })
}

fn campaign_name() -> Value {
    json!({"type": "string", "maxLength": 200, "pattern": NAME})
}

fn recipients() -> Value {
    json!({"type": "array", "items": {
        "type": "object", "required": ["phone_number"],
        "properties": {"phone_number": listed_phone(), "variables": nullable(json!({"type": "object"}))}
    }})
}

/// A number in a campaign's list: one that cannot be read does not refuse the request, it
/// is reported in `rejected` (the list goes on without it), so no pattern is promised here.
fn listed_phone() -> Value {
    json!({
        "type": "string", "example": "+14155550123",
        "description": "As `phone_number` of a single send; a number that cannot be read or \
            is not assigned is listed in the answer's `rejected`, not refused."
    })
}

/// A provider's secret: printable ASCII without spaces, as providers issue them.
fn secret(max: usize) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": "^[!-~]+$", "writeOnly": true})
}

/// An answer to STOP or HELP ("" sends none).
fn reply_text() -> Value {
    json!({"type": "string", "maxLength": 480,
        "pattern": "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"})
}

/// A sender's messages per second.
fn per_second() -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": 1000})
}

/// The handlers read optional fields as `Option`, so `null` is the same as absent.
fn nullable(mut schema: Value) -> Value {
    if let Some(object) = schema.as_object_mut() {
        allow_null(object);
    }
    schema
}

/// Present and not null (what the handler needs to see it).
fn given(field: &str, schema: Value) -> Value {
    json!({"required": [field], "properties": {field: schema}})
}

fn phone_numbers() -> Value {
    json!({"type": "array", "items": listed_phone()})
}

/// The one error shape, the headers errors carry, and the campaign bodies (which the
/// handlers read field by field, so have no struct to derive from).
fn add_components(doc: &mut Value) {
    let Some(components) = doc
        .as_object_mut()
        .map(|d| d.entry("components").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let schemas = components.entry("schemas").or_insert_with(|| json!({}));
    if let Some(schemas) = schemas.as_object_mut() {
        schemas.insert("Error".into(), json!({
            "type": "object",
            "description": "The one error shape of every endpoint",
            "required": ["success", "error", "code"],
            "properties": {
                "success": {"type": "boolean", "const": false},
                "error": {"type": "string", "description": "A sentence a person can act on"},
                "code": {"type": "string", "pattern": "^[a-z][a-z_]*$", "example": "invalid_field"},
                "field": {"type": "string", "description": "The field at fault, when one is"}
            }
        }));
        schemas.insert("JsonRpcError".into(), json!({
            "type": "object",
            "description": "An error answered to a request made in a JSON-RPC envelope",
            "required": ["jsonrpc", "error"],
            "properties": {
                "jsonrpc": {"type": "string", "const": "2.0"},
                "id": {},
                "error": {"type": "object", "required": ["code", "message", "data"], "properties": {
                    "code": {"type": "integer", "description": "The HTTP status"},
                    "message": {"type": "string"},
                    "data": {"type": "object", "required": ["code"], "properties": {
                        "code": {"type": "string"}, "field": {"type": ["string", "null"]}
                    }}
                }}
            }
        }));
        let options = json!({
            "variables": nullable(json!({"type": "object", "description": "Defaults for every recipient"})),
            "priority": nullable(priority()),
            "scheduled_at": nullable(scheduled_at()),
        });
        let mut seed = json!({
            "type": "object",
            "description": "Seed 004's campaign send",
            "required": ["campaign_name", "message_template"],
            "anyOf": [given("phone_numbers", phone_numbers()), given("recipients", recipients())],
            "properties": {
                "campaign_name": campaign_name(),
                "message_template": template_source(),
                "phone_numbers": nullable(phone_numbers()),
                "recipients": nullable(recipients()),
                "use_ai_personalization": {"type": ["boolean", "null"], "enum": [false, null], "description": "true is 422 unsupported"}
            }
        });
        merge_properties(&mut seed, &options);
        schemas.insert("CreateCampaignSendRequest".into(), seed);
        let mut own = json!({
            "type": "object",
            "description": "Herald's campaign: a template or a named one, and a list",
            "required": ["name"],
            "allOf": [
                {"anyOf": [given("template", template_source()), given("template_name", template_reference())]},
                {"anyOf": [given("phone_numbers", phone_numbers()), given("recipients", recipients())]}
            ],
            "properties": {
                "name": campaign_name(),
                "template": nullable(template_source()),
                "template_name": nullable(template_reference()),
                "phone_numbers": nullable(phone_numbers()),
                "recipients": nullable(recipients()),
                "channel": nullable(channel()),
                "sender_id": nullable(sender_id()),
                "dry_run": {"type": ["boolean", "null"], "default": false}
            }
        });
        merge_properties(&mut own, &options);
        schemas.insert("CreateCampaignRequest".into(), own);
    }
    components.insert("headers".into(), json!({
        "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer", "minimum": 1}},
        "Allow": {"description": "The methods the path answers", "schema": {"type": "string"}}
    }));
}

fn merge_properties(schema: &mut Value, extra: &Value) {
    if let (Some(props), Some(extra)) = (
        schema.get_mut("properties").and_then(Value::as_object_mut),
        extra.as_object(),
    ) {
        for (k, v) in extra {
            props.insert(k.clone(), v.clone());
        }
    }
}

/// Sets `property` of the component schema `schema` (keeping its description).
fn set_property(doc: &mut Value, schema: &str, property: &str, rule: Value) {
    let Some(slot) = doc
        .pointer_mut(&format!("/components/schemas/{schema}/properties"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let description = slot
        .get(property)
        .and_then(|p| p.get("description"))
        .cloned();
    // An optional field that takes `null` (an `Option` the handler reads) keeps taking it.
    let nullable = slot
        .get(property)
        .and_then(|p| p.get("type"))
        .and_then(Value::as_array)
        .is_some_and(|types| types.iter().any(|t| t == "null"));
    let mut rule = rule;
    if let Some(r) = rule.as_object_mut() {
        if let Some(d) = description {
            r.entry("description").or_insert(d);
        }
        if nullable {
            allow_null(r);
        }
    }
    slot.insert(property.to_owned(), rule);
}

fn allow_null(schema: &mut Map<String, Value>) {
    if let Some(Value::String(t)) = schema.get("type").cloned() {
        schema.insert("type".into(), json!([t, "null"]));
    }
    if let Some(Value::Array(values)) = schema.get_mut("enum") {
        values.push(Value::Null);
    }
}

/// The formats and patterns that decide validity, on the derived request schemas.
fn add_field_rules(doc: &mut Value, settings: &Settings) {
    for (schema, property, rule) in [
        ("SendFields", "phone_number", phone_input()),
        ("SendFields", "message", message_text(4096)),
        ("SendFields", "priority", priority()),
        ("SendFields", "channel", channel()),
        ("SendFields", "sender_id", sender_id()),
        ("SendFields", "scheduled_at", scheduled_at()),
        ("SendFields", "attachment_url", url()),
        ("SendFields", "status_callback", url()),
        ("SendFields", "campaign_id", json!({"type": "string"})),
        ("SendFields", "whatsapp_template", whatsapp_template()),
        (
            "ValidatePhoneRequest",
            "phone_number",
            json!({"type": "string", "example": "(415) 555-0123",
            "description": "Any text; one that is not a valid number answers 200 with is_valid false"}),
        ),
        ("ValidatePhoneRequest", "country", region()),
        ("NewOptOut", "phone_number", phone_input()),
        ("NewOptOut", "country", region()),
        ("NewTemplate", "name", template_name()),
        ("NewTemplate", "body", template_source()),
        ("PreviewRequest", "template", template_source()),
        ("PreviewRequest", "template_name", template_reference()),
        ("PreviewRequest", "channel", channel()),
        ("PreviewRequest", "phone_number", phone_input()),
        (
            "SendBulkRequest",
            "messages",
            json!({
                "type": "array", "minItems": 1, "maxItems": settings.messaging.max_messages_per_batch,
                // One bad item never rejects the batch: any value is taken, and one that is not
                // a valid message is refused in its own result.
                "items": {"anyOf": [
                    {"$ref": "#/components/schemas/SendFields"},
                    {"description": "Anything else is refused in its result (invalid_field, missing_field, …), not the batch"}
                ]},
                "description": "More items than the batch limit is 413 batch_too_large"
            }),
        ),
        ("SendMessageResponse", "message_id", message_id()),
        ("MessageStatusResponse", "message_id", message_id()),
        (
            "MessageStatusResponse",
            "phone_number",
            json!({"type": "string", "pattern": E164}),
        ),
        (
            "ValidatePhoneResponse",
            "formatted_number",
            json!({"type": ["string", "null"], "pattern": E164}),
        ),
        (
            "OptOutChange",
            "phone_number",
            json!({"type": "string", "pattern": E164}),
        ),
        (
            "TwilioCredentialsInput",
            "account_sid",
            json!({"type": "string", "pattern": "^AC[0-9a-fA-F]{32}$"}),
        ),
        ("TwilioCredentialsInput", "auth_token", secret(128)),
        (
            "TwilioCredentialsInput",
            "senders",
            json!({"type": "array", "minItems": 1, "maxItems": 100,
                "items": {"$ref": "#/components/schemas/SenderInput"},
                "description": "The first is the default sender; one listed twice is 400"}),
        ),
        (
            "SenderInput",
            "from",
            json!({"type": "string", "pattern": "^(\\+[1-9][0-9]{6,14}|MG[0-9a-fA-F]{32}|[A-Za-z][A-Za-z0-9 ]{0,10})$"}),
        ),
        ("SenderInput", "per_second", per_second()),
        (
            "WhatsappCredentialsInput",
            "phone_number_id",
            json!({"type": "string", "pattern": "^[0-9]{1,32}$"}),
        ),
        ("WhatsappCredentialsInput", "access_token", secret(4096)),
        ("WhatsappCredentialsInput", "app_secret", secret(256)),
        ("WhatsappCredentialsInput", "verify_token", secret(256)),
        ("WhatsappCredentialsInput", "per_second", per_second()),
        ("ReceiveFields", "phone_number", phone_input()),
        (
            "ReceiveFields",
            "message",
            json!({"type": "string", "maxLength": 4096,
                "pattern": "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"}),
        ),
        ("ReceiveFields", "channel", channel()),
        (
            "ReceiveFields",
            "external_id",
            json!({"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"}),
        ),
        ("ReceiveFields", "to", phone_input()),
        (
            "ReceiveFields",
            "media_urls",
            json!({"type": "array", "maxItems": 10, "items": url()}),
        ),
        ("KeywordRepliesInput", "stop_reply", reply_text()),
        ("KeywordRepliesInput", "help_reply", reply_text()),
        (
            "ReadFields",
            "message_ids",
            json!({"type": "array", "maxItems": 1000, "items": {"type": "string"}}),
        ),
    ] {
        set_property(doc, schema, property, rule);
    }
    // One of the two, with something in it.
    if let Some(read) = doc
        .pointer_mut("/components/schemas/ReadFields")
        .and_then(Value::as_object_mut)
    {
        read.insert(
            "anyOf".into(),
            json!([
                {"required": ["message_id"], "properties": {"message_id": {"type": "string"}}},
                {"required": ["message_ids"], "properties": {"message_ids": {"type": "array", "minItems": 1}}},
            ]),
        );
    }
    if let Some(send) = doc
        .pointer_mut("/components/schemas/SendFields")
        .and_then(Value::as_object_mut)
    {
        send.insert(
            "allOf".into(),
            json!([
                {"anyOf": sms_length_rule()},
                {"anyOf": whatsapp_template_rule()},
                {"not": whatsapp_template_with_attachment()},
                {"not": whatsapp_caption_too_long()},
            ]),
        );
    }
}

/// A path parameter's schema, by name (the same name means the same thing everywhere).
fn path_parameter(name: &str) -> Value {
    let (schema, description) = match name {
        "message_id" => (message_id(), "The `msg_…` id from the send"),
        "campaign_id" => (campaign_id(), "The `cmp_…` id from the campaign's creation"),
        "name" => (template_name(), "The template's name"),
        "thread_id" => (
            json!({"type": "string", "pattern": format!("^thr_{ULID}$"), "example": "thr_01JDZ8K5Q6V0X3M2N4P7R9S1T2"}),
            "The `thr_…` id of a thread",
        ),
        "delivery_id" => (
            json!({"type": "string", "pattern": "^dlv_[1-9][0-9]{0,17}$", "example": "dlv_42"}),
            "The `dlv_…` id of a webhook delivery",
        ),
        "provider" => (
            json!({"type": "string", "pattern": "^(twilio|whatsapp_cloud)$", "example": "twilio"}),
            "The provider: `twilio` (SMS) or `whatsapp_cloud` (WhatsApp)",
        ),
        "phone_number" => (
            phone_input(),
            "The number; `+` may be written `%2B`, or left out for an international number with its country code",
        ),
        _ => (json!({"type": "string"}), ""),
    };
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
}

fn idempotency_key() -> Value {
    json!({
        "name": "Idempotency-Key", "in": "header", "required": false,
        "description": "1-255 printable ASCII characters; the same key and body replays the first answer, another body is 409 idempotency_conflict",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\u0020-\\u007E]+$"}
    })
}

/// A query parameter's schema, by operation and name; `None` keeps the annotation's.
fn query_parameter(operation: &str, name: &str) -> Option<Value> {
    let int = |min: u64, max: u64, default: u64| json!({"type": "integer", "minimum": min, "maximum": max, "default": default});
    Some(match (operation, name) {
        ("list_campaigns", "limit") => int(1, 100, 20),
        ("list_campaigns", "before") => campaign_id(),
        ("list_opt_outs", "limit") => int(1, 1000, 100),
        ("list_threads" | "thread_messages" | "campaign_replies", "limit") => int(1, 200, 50),
        ("list_threads", "before") | ("thread_messages" | "campaign_replies", "after") => {
            json!({"type": "string", "pattern": "^[0-9]{1,15}\\.[A-Za-z0-9_]{1,64}$",
                "description": "A cursor this API answered"})
        }
        ("stats", "days") => int(1, 366, 30),
        ("search_messages", "limit") => int(1, 200, 50),
        ("search_messages", "before") => {
            json!({"type": "string", "pattern": "^[0-9]{1,15}\\.[A-Za-z0-9_]{1,64}$",
                "description": "A cursor this API answered"})
        }
        ("search_messages", "phone_number") => phone_input(),
        ("search_messages", "country") => region(),
        ("search_messages", "status") => json!({"type": "string", "enum": [
            "queued", "sending", "sent", "delivered", "read", "failed", "undelivered",
            "expired", "canceled"]}),
        ("search_messages", "channel") => channel(),
        ("search_messages", "campaign_id") => {
            json!({"type": "string", "minLength": 1, "maxLength": 128})
        }
        ("search_messages", "created_from" | "created_to") => {
            json!({"type": "string", "format": "date-time", "example": "2026-12-05T10:00:00Z"})
        }
        ("list_deliveries", "limit") => int(1, 1000, 100),
        ("list_deliveries", "state") => {
            json!({"type": "string", "enum": ["pending", "delivered", "failed"]})
        }
        ("list_deliveries", "before") => {
            json!({"type": "string", "pattern": "^dlv_[1-9][0-9]{0,17}$"})
        }
        ("stream_events", "types") => json!({"type": "string",
            "pattern": "^(message\\.status|message\\.inbound)(,(message\\.status|message\\.inbound))*$"}),
        ("stream_events", "last_event_id") => {
            json!({"type": "string", "pattern": "^(evt_)?[0-9]{1,18}$"})
        }
        // Any count is taken and clamped to 1-10,000.
        ("campaign_rejections", "limit") => int(0, usize::MAX as u64, 1000),
        ("campaign_rejections", "after") => {
            json!({"type": "integer", "minimum": i64::MIN, "maximum": i64::MAX, "description": "The last `row` seen"})
        }
        ("upload_campaign", "name") => campaign_name(),
        ("upload_campaign", "template") => template_source(),
        ("upload_campaign", "template_name") => template_reference(),
        ("upload_campaign", "channel") => channel(),
        ("upload_campaign", "priority") => priority(),
        ("upload_campaign", "sender_id") => sender_id(),
        ("upload_campaign", "scheduled_at") => scheduled_at(),
        ("upload_campaign", "dry_run") => json!({"type": "boolean", "default": false}),
        _ => return None,
    })
}

/// Query parameters a handler reads but its annotation does not list.
fn missing_query_parameters(operation: &str) -> &'static [&'static str] {
    match operation {
        "campaign_rejections" => &["after", "limit"],
        _ => &[],
    }
}

/// Where a created object's id leads (schemathesis follows these in its stateful phase).
fn links(operation: &str) -> Option<(&'static str, Value)> {
    let to = |targets: &[&str], parameter: &str, pointer: &str| {
        let mut links = Map::new();
        for target in targets {
            links.insert(
                (*target).to_owned(),
                json!({"operationId": target, "parameters": {parameter: format!("$response.body#/{pointer}")}}),
            );
        }
        Value::Object(links)
    };
    let campaign = [
        "campaign_replies",
        "get_campaign",
        "pause_campaign",
        "resume_campaign",
        "cancel_campaign",
        "campaign_rejections",
        "export_campaign",
    ];
    match operation {
        "send_message" => Some((
            "202",
            to(
                &["message_status", "sms_status"],
                "message_id",
                "message_id",
            ),
        )),
        "sms_send" => Some((
            "200",
            to(
                &["message_status", "sms_status"],
                "message_id",
                "message_id",
            ),
        )),
        "create_campaign" | "create_campaign_send" => {
            Some(("202", to(&campaign, "campaign_id", "campaign_id")))
        }
        "create_template" => Some(("201", to(&["get_template"], "name", "name"))),
        "sms_receive" => Some(("200", to(&["thread_messages"], "thread_id", "thread_id"))),
        "add_opt_out" => Some((
            "201",
            to(&["remove_opt_out"], "phone_number", "phone_number"),
        )),
        _ => None,
    }
}

/// What every operation gets: its path parameters declared, the statuses it can answer,
/// the one error shape on each 4xx/5xx, and its links.
fn complete_operation(path: &str, method: &str, op: &mut Map<String, Value>, settings: &Settings) {
    let operation_id = op
        .get("operationId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let authenticated = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    let writes = matches!(method, "post" | "put" | "patch" | "delete");
    let body_types: Vec<String> = op
        .get("requestBody")
        .and_then(|b| b.get("content"))
        .and_then(Value::as_object)
        .map(|c| c.keys().cloned().collect())
        .unwrap_or_default();
    let json_body = body_types.iter().any(|t| t == "application/json");
    let odoo = path.contains("/sms/");

    // Path parameters: every `{name}` declared, with what makes it valid.
    let parameters = op
        .entry("parameters")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut kept: Vec<Value> = parameters
        .into_iter()
        .filter(|p| p.get("in").and_then(Value::as_str) != Some("path"))
        .collect();
    let names: Vec<&str> = path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .collect();
    for name in &names {
        kept.push(path_parameter(name));
    }
    for name in missing_query_parameters(&operation_id) {
        kept.push(json!({"name": name, "in": "query", "required": false}));
    }
    for parameter in &mut kept {
        let Some(parameter) = parameter.as_object_mut() else {
            continue;
        };
        if parameter.get("in").and_then(Value::as_str) != Some("query") {
            continue;
        }
        let name = parameter
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(schema) = query_parameter(&operation_id, &name) {
            parameter.insert("schema".into(), schema);
        }
    }
    let idempotent = matches!(
        operation_id.as_str(),
        "send_message"
            | "send_bulk"
            | "sms_send"
            | "create_campaign"
            | "create_campaign_send"
            | "upload_campaign"
    );
    kept.retain(|p| p.get("name").and_then(Value::as_str) != Some("Idempotency-Key"));
    if idempotent {
        kept.push(idempotency_key());
    }
    let has_query = kept
        .iter()
        .any(|p| p.get("in").and_then(Value::as_str) == Some("query"));
    if kept.is_empty() {
        op.remove("parameters");
    } else {
        op.insert("parameters".into(), Value::Array(kept));
    }
    for (operation, schema) in [
        ("create_campaign_send", "CreateCampaignSendRequest"),
        ("create_campaign", "CreateCampaignRequest"),
    ] {
        if operation_id == operation
            && let Some(content) = op
                .get_mut("requestBody")
                .and_then(|b| b.pointer_mut("/content/application~1json"))
                .and_then(Value::as_object_mut)
        {
            content.insert(
                "schema".into(),
                json!({"$ref": format!("#/components/schemas/{schema}")}),
            );
        }
    }
    if json_body && let Some(description) = op.get_mut("requestBody").and_then(Value::as_object_mut)
    {
        let note = format!(
            "At most {} bytes (413 payload_too_large beyond).",
            settings.server.max_body_bytes
        );
        let text = match description.get("description").and_then(Value::as_str) {
            Some(d) => format!("{d}. {note}"),
            None => note,
        };
        description.insert("description".into(), Value::String(text));
    }

    // The statuses that do not depend on the handler.
    let mut standard: Vec<(&str, &str)> = Vec::new();
    if json_body || has_query || !names.is_empty() || !body_types.is_empty() || idempotent {
        standard.push(("400", "invalid_json, missing_field, invalid_field (a body, query string, path or header that does not parse or is out of range)"));
    }
    if authenticated {
        standard.push((
            "401",
            "unauthorized: no key, an unknown key or another scheme",
        ));
        standard.push((
            "429",
            "rate_limited (the key's request rate), with Retry-After",
        ));
    }
    if !body_types.is_empty() {
        standard.push(("413", "payload_too_large: the body is over the limit"));
        standard.push((
            "415",
            "unsupported_media_type: send the content type this operation takes",
        ));
    }
    if idempotent {
        standard.push((
            "409",
            "idempotency_conflict: this Idempotency-Key was used with another body",
        ));
    }
    if writes {
        standard.push(("503", "service_unavailable: the database cannot take writes right now (disk full, locked); retry after Retry-After"));
    }
    standard.push((
        "500",
        "internal_error: something went wrong on Herald's side",
    ));
    let responses = op.entry("responses").or_insert_with(|| json!({}));
    let Some(responses) = responses.as_object_mut() else {
        return;
    };
    for (status, description) in standard {
        responses
            .entry(status)
            .or_insert_with(|| json!({"description": description}));
    }
    let error_schema = if odoo {
        json!({"anyOf": [{"$ref": "#/components/schemas/Error"}, {"$ref": "#/components/schemas/JsonRpcError"}]})
    } else {
        json!({"$ref": "#/components/schemas/Error"})
    };
    for (status, response) in responses.iter_mut() {
        let Some(response) = response.as_object_mut() else {
            continue;
        };
        if status.starts_with('4') || status.starts_with('5') {
            response.insert(
                "content".into(),
                json!({"application/json": {"schema": error_schema}}),
            );
            if matches!(status.as_str(), "429" | "503") {
                response.insert(
                    "headers".into(),
                    json!({"Retry-After": {"$ref": "#/components/headers/Retry-After"}}),
                );
            }
        }
    }
    if let Some((status, links)) = links(&operation_id)
        && let Some(response) = responses.get_mut(status).and_then(Value::as_object_mut)
    {
        response.insert("links".into(), links);
    }
}
