//! The application as a value: [`Application::build`] opens the store, bootstraps the first
//! account and binds the listener (port 0 in tests); [`Application::run_until`] serves and
//! runs the workers until the token is cancelled, then drains.

use crate::api::{self, AppState};
use crate::auth;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::providers::accounts::AccountProviders;
use crate::ratelimit::shared::SharedLimits;
use crate::store::{NewAccount, Store, StoreError};
use crate::templates::TemplateLibrary;
use crate::workers::Workers;
use anyhow::Context;
use secrecy::ExposeSecret;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Name of the account created on first start.
pub const BOOTSTRAP_ACCOUNT: &str = "default";

pub struct Application {
    settings: Settings,
    store: Store,
    listener: TcpListener,
    with_workers: bool,
    templates: TemplateLibrary,
    /// The key generated on first start, if one was (printed once).
    pub generated_key: Option<String>,
}

impl Application {
    /// # Errors
    /// The database cannot be opened or migrated, or the address cannot be bound.
    pub async fn build(settings: Settings, with_workers: bool) -> anyhow::Result<Application> {
        let store = Store::open(&settings.database)
            .await
            .with_context(|| format!("could not open the database {}", settings.database.url))?;
        let generated_key = bootstrap(&store, &settings).await?;
        let dir = std::path::Path::new(&settings.campaigns.templates_dir);
        let templates = TemplateLibrary::load_dir(dir)
            .with_context(|| format!("could not load the templates in {}", dir.display()))?;
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("could not listen on {}", settings.server.listen))?;
        Ok(Application {
            settings,
            store,
            listener,
            with_workers,
            templates,
            generated_key,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, lets the workers finish
    /// what they hold, and commits everything pending before returning.
    ///
    /// # Errors
    /// The server or a worker task failed.
    pub async fn run_until(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let metrics = Metrics::default();
        let shared_limits = SharedLimits::from_settings(&self.settings.redis, metrics.clone())?;
        // One set of accounts' adapters for API and workers: a change through the API
        // reaches this process's workers at once.
        let accounts = AccountProviders::new(self.store.clone(), &self.settings)?;
        let workers = if self.with_workers {
            Some(
                Workers::start(
                    &self.settings,
                    self.store.clone(),
                    metrics.clone(),
                    accounts.clone(),
                    shared_limits.clone(),
                    shutdown.clone(),
                )
                .await?,
            )
        } else {
            None
        };
        let state = AppState::new(
            self.store.clone(),
            self.settings.clone(),
            metrics,
            self.templates,
            accounts,
            crate::events::feed::EventFeed::start(
                self.store.clone(),
                Duration::from_millis(self.settings.events.poll_interval_ms),
                shutdown.clone(),
            )
            .await?,
            shared_limits,
        );
        let trim = state.clone();
        let trim_stop = shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = every.tick() => trim.forget_idle(),
                    () = trim_stop.cancelled() => return,
                }
            }
        });
        tracing::info!(address = %self.listener.local_addr()?, workers = self.with_workers, "Herald is listening");
        let served = axum::serve(self.listener, api::router(state))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .context("the HTTP server failed");
        shutdown.cancel();
        let drained = match workers {
            Some(workers) => workers.join().await,
            None => Ok(()),
        };
        self.store.close().await;
        served.and(drained)
    }
}

/// Runs only workers (no HTTP), as `herald worker` does.
///
/// # Errors
/// The database cannot be opened, or a worker task failed.
pub async fn run_workers_until(
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = Store::open(&settings.database).await?;
    let accounts = AccountProviders::new(store.clone(), &settings)?;
    let metrics = Metrics::default();
    let shared_limits = SharedLimits::from_settings(&settings.redis, metrics.clone())?;
    let workers = Workers::start(
        &settings,
        store.clone(),
        metrics,
        accounts,
        shared_limits,
        shutdown.clone(),
    )
    .await?;
    tracing::info!("Herald worker started");
    shutdown.cancelled().await;
    let result = workers.join().await;
    store.close().await;
    result
}

/// On an empty database: the `default` account with the bootstrap balance and a key.
/// A configured `auth.bootstrap_api_key` is (re)registered for that account on every start,
/// so setting it later works too. Returns a generated key, which the caller prints.
async fn bootstrap(store: &Store, settings: &Settings) -> anyhow::Result<Option<String>> {
    let configured = settings.auth.bootstrap_api_key.expose_secret().to_owned();
    let account = if store.account_count().await? == 0 {
        let created = store
            .create_account(NewAccount {
                name: BOOTSTRAP_ACCOUNT.to_owned(),
                balance: settings.accounts.bootstrap_balance,
                currency: settings.accounts.default_currency.clone(),
                daily_limit: settings.accounts.daily_limit,
            })
            .await;
        let account = match created {
            Ok(account) => account,
            // Another process sharing the database bootstrapped it a moment ago.
            Err(StoreError::AccountExists(_)) => store.find_account(BOOTSTRAP_ACCOUNT).await?,
            Err(e) => return Err(e.into()),
        };
        if configured.is_empty() {
            let key = auth::generate_key();
            store.insert_api_key(&account, auth::hash_key(&key)).await?;
            return Ok(Some(key));
        }
        Some(account)
    } else {
        None
    };
    if !configured.is_empty() {
        let hash = auth::hash_key(&configured);
        if store.authenticate(hash).await?.is_none() {
            let account = match account {
                Some(a) => a,
                None => store.find_account(BOOTSTRAP_ACCOUNT).await?,
            };
            store.insert_api_key(&account, hash).await?;
        }
    }
    Ok(None)
}
