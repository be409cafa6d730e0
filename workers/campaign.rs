//! Campaign fan-out (after listmonk's manager): each running campaign's staged recipients
//! become messages in batches. A batch and the checkpoint that records it commit in one
//! transaction, so a crash neither loses nor repeats a recipient; the batch reserves its
//! cost with it, so a campaign that runs out of money pauses cleanly at a recipient
//! boundary. Campaign messages then travel the same queue as single sends, in their
//! priority lane, under the same rate limits.
//!
//! Pause and cancel are flags on the campaign row: the fan-out checks it every batch, claims
//! skip the campaign's messages, and [`CampaignGate`] stops those already claimed, so a pause
//! takes effect within [`GATE_TTL`] even for messages waiting on a rate limit.

use super::idle::IdlePoll;
use crate::domain::{CampaignStatus, Timestamp};
use crate::store::{FanOutRequest, Store};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the runner looks for campaigns to start, expand or complete while there are
/// some; with none, up to eight times less often ([`IdlePoll`]).
const TICK: Duration = Duration::from_millis(100);
/// Longest one campaign is expanded before the others get their turn.
const SLICE: Duration = Duration::from_millis(250);
/// A loading campaign untouched this long was abandoned by a process that died.
const ABANDONED_AFTER: Duration = Duration::from_secs(10 * 60);
/// How long a worker trusts what it read of a campaign's state.
pub(super) const GATE_TTL: Duration = Duration::from_millis(250);

pub(super) struct Fanout {
    pub store: Store,
    pub batch: usize,
    pub validity: Duration,
}

impl Fanout {
    pub(super) async fn run_until(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut poll = IdlePoll::new(TICK);
        let mut last_cleanup: Option<Instant> = None;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(poll.wait()) => {}
            }
            match self.step(&shutdown).await {
                Ok(any) => poll.found(any),
                Err(e) => {
                    poll.found(true);
                    tracing::warn!(error = %e, "campaign fan-out step failed; retrying");
                }
            }
            if last_cleanup.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                last_cleanup = Some(Instant::now());
                match self.store.discard_stale_campaigns(ABANDONED_AFTER).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(campaigns = n, "discarded abandoned campaign uploads"),
                    Err(e) => tracing::warn!(error = %e, "could not discard abandoned uploads"),
                }
            }
        }
    }

    /// One look at the active campaigns; a campaign with nothing to do costs only reads.
    /// Answers whether there was any (scheduled, running or waiting to complete).
    async fn step(&self, shutdown: &CancellationToken) -> anyhow::Result<bool> {
        let now = Timestamp::now();
        let mut active = self.store.active_campaigns().await?;
        if active
            .iter()
            .any(|c| c.status == CampaignStatus::Scheduled && c.scheduled_at <= now)
        {
            self.store.start_due_campaigns().await?;
            active = self.store.active_campaigns().await?;
        }
        let any = !active.is_empty();
        for campaign in active {
            if campaign.status != CampaignStatus::Running {
                continue;
            }
            // A running campaign may still have messages a pause holds: a worker that read
            // the pause just before the resume holds what it claims for up to GATE_TTL after
            // it, and a resume interrupted halfway leaves the rest. Released here.
            if self.store.campaign_held(&campaign.campaign_id).await? {
                self.store
                    .settle_campaign_messages(&campaign.campaign_id, CampaignStatus::Running)
                    .await?;
            }
            if campaign.fanned_out >= campaign.last_seq {
                if !self.store.campaign_waiting(&campaign.campaign_id).await?
                    && self.store.complete_campaign(&campaign.campaign_id).await?
                {
                    tracing::info!(campaign_id = %campaign.campaign_id, "campaign completed");
                }
                continue;
            }
            let started = Instant::now();
            while started.elapsed() < SLICE && !shutdown.is_cancelled() {
                let result = self
                    .store
                    .fan_out(FanOutRequest {
                        campaign_id: campaign.campaign_id.clone(),
                        limit: self.batch,
                        validity: self.validity,
                    })
                    .await?;
                if let Some(reason) = result.paused {
                    tracing::info!(campaign_id = %campaign.campaign_id, reason = reason.as_str(), "campaign paused");
                }
                if result.done || result.paused.is_some() || result.messages + result.opted_out == 0
                {
                    break;
                }
            }
        }
        Ok(any)
    }
}

/// What workers last read of each campaign's state, so that a message claimed before a
/// pause or cancel is not sent after it.
pub(super) struct CampaignGate {
    store: Store,
    seen: Mutex<HashMap<String, (Option<CampaignStatus>, Instant)>>,
}

impl CampaignGate {
    pub(super) fn new(store: Store) -> Self {
        Self {
            store,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The campaign's state, at most [`GATE_TTL`] old. `None` for ids that are not
    /// campaigns (a client's own `campaign_id` on a single send).
    pub(super) async fn state(&self, campaign_id: &str) -> Option<CampaignStatus> {
        if !campaign_id.starts_with("cmp_") {
            return None;
        }
        if let Ok(seen) = self.seen.lock()
            && let Some((state, at)) = seen.get(campaign_id)
            && at.elapsed() < GATE_TTL
        {
            return *state;
        }
        let state = match self.store.campaign_state(campaign_id).await {
            Ok(state) => state,
            // Unknown is treated as "may go": a read failure must not stop deliveries.
            Err(e) => {
                tracing::warn!(error = %e, "could not read a campaign's state");
                None
            }
        };
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() > 10_000 {
                seen.clear();
            }
            seen.insert(campaign_id.to_owned(), (state, Instant::now()));
        }
        state
    }
}
