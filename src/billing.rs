//! Prices: what a message costs, decided when it is accepted (SPEC §6). Reservation,
//! settlement and release of that cost happen in the store, in the same transactions as the
//! status changes that cause them.

use crate::config::PricingSettings;
use crate::domain::{Channel, Encoding, Money, Segments, segments};

#[derive(Debug, Clone)]
pub struct Pricing {
    sms_per_segment: Money,
    whatsapp_per_message: Money,
}

impl Pricing {
    pub fn from_settings(s: &PricingSettings) -> Self {
        Self {
            sms_per_segment: s.sms_per_segment,
            whatsapp_per_message: s.whatsapp_per_message,
        }
    }

    /// SMS are charged per segment; a WhatsApp message is one message however long.
    pub fn cost(&self, channel: Channel, segments: Segments) -> Money {
        match channel {
            Channel::Sms => self.sms_per_segment.times(segments.count),
            Channel::Whatsapp => self.whatsapp_per_message,
        }
    }
}

/// What a text counts as on `channel`: SMS segments, or one WhatsApp message however long
/// (reported as UCS-2, since WhatsApp carries any character).
pub fn measure(channel: Channel, text: &str) -> Segments {
    match channel {
        Channel::Sms => segments::count(text),
        Channel::Whatsapp => Segments {
            encoding: Encoding::Ucs2,
            count: 1,
            units: 0,
        },
    }
}
