//! Turning a campaign's list into recipients (SPEC §3, §7): each row's number is normalized,
//! deduplicated on its E.164 form, checked against the opt-out list, rendered and priced.
//! A row that fails any step is a [`Rejection`] with the SPEC's code; it never stops the
//! others. The same builder serves JSON bodies, streamed CSV uploads and dry runs, so a dry
//! run predicts exactly what the real run charges.

use crate::billing::{Pricing, measure};
use crate::domain::{Channel, E164, MessageText, NumberType, Region, phone};
use crate::store::{CampaignTotals, Rejection, StagedRecipient};
use crate::templates::Template;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};

/// Rejections listed in an answer beyond which only the counts are given (the rest are at
/// `GET /campaigns/{id}/rejections`).
pub const REJECTIONS_LISTED: usize = 100;

/// What to do with one input row.
#[derive(Debug)]
pub enum Row {
    Staged(StagedRecipient),
    Rejected(Rejection),
}

/// How numbers are read and which are refused.
#[derive(Debug, Clone)]
pub struct NumberRules {
    pub region: Region,
    pub reject_fixed_line: bool,
}

pub struct ListBuilder {
    template: Template,
    defaults: Map<String, Value>,
    channel: Channel,
    pricing: Pricing,
    rules: NumberRules,
    opted_out: HashSet<String>,
    /// E.164 numbers seen so far, as integers: a million recipients cost 16 MB, not 60.
    seen: HashSet<u64>,
    totals: CampaignTotals,
    by_code: BTreeMap<String, i64>,
    listed: Vec<Rejection>,
    list_limit: usize,
}

impl ListBuilder {
    pub fn new(
        template: Template,
        defaults: Map<String, Value>,
        channel: Channel,
        pricing: Pricing,
        rules: NumberRules,
        opted_out: HashSet<String>,
        list_limit: usize,
    ) -> Self {
        Self {
            template,
            defaults,
            channel,
            pricing,
            rules,
            opted_out,
            seen: HashSet::new(),
            totals: CampaignTotals {
                last_seq: -1,
                ..CampaignTotals::default()
            },
            by_code: BTreeMap::new(),
            listed: Vec::new(),
            list_limit,
        }
    }

    /// Decides the next input row.
    pub fn push(&mut self, phone_number: &str, variables: &Map<String, Value>) -> Row {
        let seq = self.totals.recipients_total;
        self.totals.recipients_total += 1;
        match self.recipient(seq, phone_number, variables) {
            Ok(staged) => {
                self.totals.recipients_accepted += 1;
                self.totals.estimated_segments += i64::from(staged.segments);
                self.totals.estimated_cost = self.totals.estimated_cost + staged.cost;
                self.totals.last_seq = seq;
                Row::Staged(staged)
            }
            Err((code, error)) => {
                let rejection = Rejection {
                    seq,
                    phone_number: phone_number.chars().take(64).collect(),
                    code: code.to_owned(),
                    error,
                };
                self.totals.rejected += 1;
                if code == "recipient_opted_out" {
                    self.totals.opted_out += 1;
                }
                *self.by_code.entry(code.to_owned()).or_default() += 1;
                if self.listed.len() < self.list_limit {
                    self.listed.push(rejection.clone());
                }
                Row::Rejected(rejection)
            }
        }
    }

    fn recipient(
        &mut self,
        seq: i64,
        input: &str,
        variables: &Map<String, Value>,
    ) -> Result<StagedRecipient, (&'static str, String)> {
        let e164 = self.number(input)?;
        let key = e164
            .as_str()
            .get(1..)
            .and_then(|digits| digits.parse::<u64>().ok())
            .unwrap_or(0);
        if !self.seen.insert(key) {
            return Err((
                "duplicate_recipient",
                format!("{e164} is already in this campaign; it is messaged once"),
            ));
        }
        if self.opted_out.contains(e164.as_str()) {
            return Err((
                "recipient_opted_out",
                "the recipient opted out of messages from this account".to_owned(),
            ));
        }
        let body = self
            .template
            .render(&self.defaults, variables, e164.as_str())
            .map_err(|e| ("template_error", e.to_string()))?;
        let text = MessageText::parse(body, self.channel)
            .map_err(|e| ("invalid_field", format!("the rendered message: {e}")))?;
        let segments = measure(self.channel, text.as_str());
        Ok(StagedRecipient {
            seq,
            phone_number: e164.into_string(),
            body: text.into_string(),
            segments: segments.count,
            cost: self.pricing.cost(self.channel, segments),
        })
    }

    fn number(&self, input: &str) -> Result<E164, (&'static str, String)> {
        if self.rules.reject_fixed_line {
            let info = phone::inspect(input, self.rules.region)
                .map_err(|e| ("invalid_phone_number", e.to_string()))?;
            if info.number_type == NumberType::FixedLine {
                return Err((
                    "invalid_phone_number",
                    format!(
                        "{} is a fixed line, which cannot receive messages",
                        info.e164
                    ),
                ));
            }
            return Ok(info.e164);
        }
        E164::parse(input, self.rules.region).map_err(|e| ("invalid_phone_number", e.to_string()))
    }

    pub fn totals(&self) -> &CampaignTotals {
        &self.totals
    }

    pub fn finish(self) -> ListSummary {
        ListSummary {
            totals: self.totals,
            by_code: self.by_code,
            listed: self.listed,
        }
    }
}

/// What validating the whole list found.
#[derive(Debug, Clone)]
pub struct ListSummary {
    pub totals: CampaignTotals,
    pub by_code: BTreeMap<String, i64>,
    /// The first rejections, in input order.
    pub listed: Vec<Rejection>,
}
