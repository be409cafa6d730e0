//! The worker side: everything that happens to a message after the API stored it.
//!
//! How a message flows through here:
//! 1. `queue.rs`: the message row *is* the job. [`MessageQueue`], an apalis backend, claims
//!    due rows in priority lanes (`sending`, leased to this process) and hands them to the
//!    apalis worker, which runs up to `workers.concurrency` deliveries at once.
//! 2. `deliver.rs`: waits for the sender's and account's rate limits, hands the message to
//!    the provider, and records the outcome (sent, retry later, failed, expired). Outcomes
//!    of many deliveries are committed together.
//! 3. `receipts.rs`: provider receipts (webhooks, or the mock's network) move messages on to
//!    delivered / read / undelivered, durably before the provider is told they arrived.
//! 4. `sweeper.rs`: heartbeats, and recovery of messages whose worker process died.
//! 5. `campaign.rs`: expands running campaigns into messages, in checkpointed batches.
//! 6. `reconcile.rs`: looks up, at the provider, `sent` messages whose receipt is overdue.
//!
//! This folder is part of the `herald` crate (mounted from `src/lib.rs`), because `herald
//! serve` runs API and workers in one process and both need the store and providers.

mod campaign;
mod deliver;
mod idle;
mod queue;
mod receipts;
mod reconcile;
mod retry;
mod route;
mod sweeper;
mod tally;
mod webhook_lanes;
mod webhooks;

pub use deliver::Deliverer;
pub use queue::MessageQueue;
pub use receipts::ReceiptSink;
pub use retry::RetryPolicy;
pub use route::{Breaker, Route};

use crate::config::{Settings, TWILIO, WHATSAPP_CLOUD};
use crate::domain::Channel;
use crate::metrics::Metrics;
use crate::providers::Provider;
use crate::providers::accounts::AccountProviders;
use crate::providers::mock::MockProvider;
use crate::providers::twilio::TwilioProvider;
use crate::providers::whatsapp::WhatsappProvider;
use crate::ratelimit::DeliveryLimits;
use crate::ratelimit::shared::SharedLimits;
use crate::store::Store;
use anyhow::Context;
use apalis_core::worker::builder::WorkerBuilder;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Everything the worker side runs, started together and stopped together.
pub struct Workers {
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Workers {
    /// Starts delivery, receipts and the sweeper; they stop when `shutdown` is cancelled,
    /// letting in-flight deliveries finish (up to `workers.shutdown_timeout_seconds`).
    ///
    /// # Errors
    /// A provider that cannot start (e.g. the mock's hand-over log cannot be opened).
    pub async fn start(
        settings: &Settings,
        store: Store,
        metrics: Metrics,
        accounts: AccountProviders,
        shared_limits: Option<SharedLimits>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Workers> {
        let instance_id = format!("worker-{}", ulid::Ulid::new());
        let sink = ReceiptSink::new(store.clone(), metrics.clone());
        // The network's receipts keep flowing until deliveries have drained, then stop.
        let receipts_shutdown = CancellationToken::new();
        let mock = Arc::new(
            MockProvider::start(
                settings.providers.mock.clone(),
                settings.mock_journal(),
                sink.clone(),
                crate::inbound::Receiver::new(store.clone(), settings, metrics.clone()),
                receipts_shutdown.clone(),
            )
            .context("the mock provider could not start")?,
        );
        // One instance per provider named in the config (validation allows only these
        // names), shared by the channels that use it.
        let mut providers: Vec<Arc<dyn Provider>> = vec![mock];
        let mut provider = |name: &str| -> anyhow::Result<Option<Arc<dyn Provider>>> {
            if name.is_empty() {
                return Ok(None);
            }
            if let Some(p) = providers.iter().find(|p| p.name() == name) {
                return Ok(Some(Arc::clone(p)));
            }
            let p: Arc<dyn Provider> = if name == WHATSAPP_CLOUD {
                Arc::new(WhatsappProvider::from_settings(settings)?)
            } else {
                debug_assert_eq!(name, TWILIO);
                Arc::new(TwilioProvider::from_settings(settings)?)
            };
            providers.push(Arc::clone(&p));
            Ok(Some(p))
        };
        let p = &settings.providers;
        let failover = &p.failover;
        let breaker = || {
            Breaker::new(
                failover.failure_threshold,
                Duration::from_secs(failover.open_seconds),
            )
        };
        let mut route = |channel, primary: &str, fallback: &str| -> anyhow::Result<Route> {
            let primary = provider(primary)?.context("no provider for the channel")?;
            let fallback = provider(fallback)?;
            Ok(Route::new(
                channel,
                primary,
                fallback,
                breaker(),
                metrics.clone(),
            ))
        };
        let sms = route(Channel::Sms, &p.sms, &p.sms_fallback)?;
        let whatsapp = route(Channel::Whatsapp, &p.whatsapp, &p.whatsapp_fallback)?;
        let limits = DeliveryLimits::new(settings.limits.account_per_minute, shared_limits);
        for p in &providers {
            metrics.provider_started(p.name());
        }
        let deliverer = Arc::new(Deliverer::new(
            store.clone(),
            sink.clone(),
            route::Routes {
                sms,
                whatsapp,
                accounts: accounts.clone(),
            },
            limits.clone(),
            RetryPolicy::from_settings(&settings.workers),
            metrics.clone(),
        ));

        // Alive before the first claim, so no other process mistakes our claims for orphans.
        let lease = Duration::from_secs(settings.workers.lease_seconds);
        store
            .heartbeat(&instance_id, lease)
            .await
            .context("could not register the worker process")?;

        let mut tasks = JoinSet::new();
        // On PostgreSQL every worker process runs the fan-out too: a step holds its campaign's
        // row, so the processes take turns and expand each recipient once.
        tasks.spawn(
            campaign::Fanout {
                store: store.clone(),
                batch: settings.campaigns.fanout_batch,
                validity: settings.validity_period(),
            }
            .run_until(shutdown.clone()),
        );
        // On PostgreSQL every worker process folds the same event log; the store counts each
        // event once (see `store::overview::TallyFolder`).
        tasks.spawn(tally::run_until(store.clone(), shutdown.clone()));
        tasks.spawn(sweeper::run_until(
            store.clone(),
            metrics.clone(),
            instance_id.clone(),
            limits,
            Duration::from_secs(settings.workers.heartbeat_seconds),
            lease,
            shutdown.clone(),
        ));

        // Twilio's overdue receipts are looked up (the only provider that can be asked), for
        // the deployment's account and for accounts that brought their own, so this runs
        // whether or not the deployment uses Twilio.
        let t = &settings.providers.twilio;
        tasks.spawn(
            reconcile::Reconciler {
                name: TWILIO,
                channel: Channel::Sms,
                wait: Duration::from_secs(t.lookup_after_seconds),
                deployment: providers.iter().find(|p| p.name() == TWILIO).cloned(),
                accounts: accounts.clone(),
                store: store.clone(),
                sink: sink.clone(),
                every: Duration::from_secs(settings.workers.reconcile_every_seconds),
                batch: settings.workers.reconcile_batch,
                max_age: Duration::from_secs(t.lookup_max_age_seconds),
            }
            .run_until(shutdown.clone()),
        );

        let dispatcher = webhooks::Dispatcher::new(store.clone(), settings, metrics.clone())
            .context("the webhook dispatcher could not start")?;
        if store.bound_to_runtime() {
            tasks.spawn(dispatcher.run_until(shutdown.clone()));
        } else {
            tasks.spawn(dispatcher.run_on_own_runtime(shutdown.clone())?);
        }

        let queue = MessageQueue::new(
            store,
            instance_id.clone(),
            settings.queue.batch_size,
            lease,
            Duration::from_millis(settings.queue.poll_interval_ms),
        );
        let concurrency = settings.workers.concurrency;
        let grace = Duration::from_secs(settings.workers.shutdown_timeout_seconds);
        tasks.spawn(async move {
            let worker = WorkerBuilder::new(format!("deliver-{instance_id}"))
                .backend(queue)
                .layer(tower::limit::ConcurrencyLimitLayer::new(concurrency))
                .data(deliverer)
                .build(deliver::deliver);
            let stop = shutdown.clone();
            let run = worker.run_until(async move {
                stop.cancelled().await;
                Ok::<(), std::io::Error>(())
            });
            let overdue = async {
                shutdown.cancelled().await;
                tokio::time::sleep(grace).await;
            };
            let result = tokio::select! {
                result = run => result.context("the delivery worker stopped with an error"),
                () = overdue => {
                    // What is still in flight stays leased; the next start (or another
                    // worker) takes it over once this process's heartbeat is stale.
                    tracing::warn!("deliveries still in flight after the shutdown grace period");
                    Ok(())
                }
            };
            // Receipts keep flowing until deliveries have drained, then stop.
            receipts_shutdown.cancel();
            result
        });
        Ok(Workers { tasks })
    }

    /// Waits for every worker task to finish (after the shutdown token was cancelled).
    pub async fn join(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let result = joined.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(e) = result {
                tracing::error!(error = %e, "a worker task failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
