//! `/openapi.json`: every endpoint, described from the handlers' own annotations.

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
        super::campaigns::create_campaign,
        super::campaign_upload::upload_campaign,
        super::campaign_status::list_campaigns,
        super::campaign_status::get_campaign,
        super::campaign_status::pause_campaign,
        super::campaign_status::resume_campaign,
        super::campaign_status::cancel_campaign,
        super::campaign_status::campaign_rejections,
        super::templates::list_templates,
        super::templates::get_template,
        super::templates::create_template,
        super::templates::preview_template,
        super::opt_outs::list_opt_outs,
        super::opt_outs::add_opt_out,
        super::opt_outs::remove_opt_out,
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

pub(crate) async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
