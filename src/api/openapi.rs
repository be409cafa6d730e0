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
