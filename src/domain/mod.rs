//! Domain types: no I/O, no HTTP, no SQL.
//!
//! Request strings become these types at the edge (parse, don't validate), so everything
//! downstream can rely on a phone number being valid E.164, a status transition being legal,
//! and money being exact.

pub mod campaign;
pub mod channel;
pub mod ids;
pub mod keyword;
pub mod money;
pub mod phone;
pub mod priority;
pub mod segments;
pub mod status;
pub mod text;
pub mod time;
pub mod whatsapp_template;

pub use campaign::{CampaignStatus, PauseReason};
pub use channel::Channel;
pub use ids::{AccountId, ApiKeyId, CampaignId, IdBlock, MessageId, ThreadId};
pub use keyword::Keyword;
pub use money::Money;
pub use phone::{E164, NumberType, PhoneError, PhoneInfo, Region};
pub use priority::Priority;
pub use segments::{Encoding, Segments};
pub use status::MessageStatus;
pub use text::{MessageText, TextError};
pub use time::Timestamp;
pub use whatsapp_template::{TemplateFieldError, WhatsappTemplate};
