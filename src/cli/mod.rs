//! The command line: `serve`, `worker`, `migrate`, `accounts create`, `keys create`,
//! `campaign launch|status`, `send`.

mod campaign;
mod client;
mod send;

use crate::app::{self, Application};
use crate::auth;
use crate::config::Settings;
use crate::domain::Money;
use crate::store::{NewAccount, Store};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "Self-hosted bulk SMS and WhatsApp dispatch engine"
)]
pub struct Cli {
    /// A TOML file overriding the built-in defaults (environment variables HERALD__… win over it).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API and (unless --no-workers) the delivery workers.
    Serve {
        /// API only; run `herald worker` processes to deliver.
        #[arg(long)]
        no_workers: bool,
    },
    /// Run delivery workers only.
    Worker,
    /// Create or update the database schema, then exit.
    Migrate,
    /// Manage accounts (tenants).
    Accounts {
        #[command(subcommand)]
        command: AccountsCommand,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Launch and follow campaigns on a running Herald.
    Campaign {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: CampaignCommand,
    },
    /// Send one message through a running Herald, print its id, and with --follow each
    /// status it reaches.
    Send {
        #[command(flatten)]
        remote: Remote,
        #[command(flatten)]
        send: send::OneMessage,
    },
}

/// Which Herald an API command talks to.
#[derive(Debug, clap::Args)]
struct Remote {
    /// Herald's address; by default the `server.listen` of the configuration.
    #[arg(long, global = true)]
    url: Option<String>,
    /// An API key of the account (or set HERALD_API_KEY).
    #[arg(long, global = true, env = "HERALD_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// No server needed: run Herald (API and workers) inside this command, on the
    /// configured database, for as long as the command runs.
    #[arg(long, global = true, conflicts_with = "url")]
    local: bool,
}

impl Remote {
    /// Runs `command` with a client of the Herald this names.
    async fn run<F, Fut>(self, settings: Settings, command: F) -> anyhow::Result<()>
    where
        F: FnOnce(client::Client) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let key = self.api_key.unwrap_or_default();
        if !self.local {
            let url = self
                .url
                .unwrap_or_else(|| format!("http://{}", settings.server.listen));
            return command(client::Client::new(&url, key)?).await;
        }
        // The same client, talking to a Herald started here on a free loopback port, so
        // the local path is the API path (validation, limits, idempotency) and nothing
        // is written twice. Another process on the same database may deliver too: claims
        // are leased, so they share the work.
        let mut settings = settings;
        settings.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let app = Application::build(settings, true).await?;
        let client = client::Client::new(&format!("http://127.0.0.1:{}", app.port()), key)?;
        let stop = tokio_util::sync::CancellationToken::new();
        let herald = tokio::spawn(app.run_until(stop.clone()));
        let result = command(client).await;
        stop.cancel();
        herald.await??;
        result
    }
}

#[derive(Debug, Subcommand)]
enum CampaignCommand {
    /// Upload a CSV list (a `phone_number` column, one column per variable) with a template,
    /// then follow the campaign with a progress bar until it is done.
    Launch(campaign::Launch),
    /// Show a campaign's counters (or follow it with --follow).
    Status {
        campaign_id: String,
        #[arg(long)]
        follow: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AccountsCommand {
    /// Create an account and a first API key (printed on the last line).
    Create {
        name: String,
        /// Opening balance in the default currency.
        #[arg(long, default_value = "0")]
        balance: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create another API key for an account (by name or acc_ id), printed on the last line.
    Create { account: String },
}

/// # Errors
/// Whatever the command failed at, as a sentence with its causes.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve { no_workers } => {
            let shutdown = crate::shutdown::on_signal();
            let app = Application::build(settings, !no_workers).await?;
            if let Some(key) = &app.generated_key {
                println!(
                    "Created the account `{}`. Its API key (shown once):",
                    app::BOOTSTRAP_ACCOUNT
                );
                println!("{key}");
            }
            app.run_until(shutdown).await
        }
        Command::Worker => app::run_workers_until(settings, crate::shutdown::on_signal()).await,
        Command::Migrate => {
            let store = Store::open(&settings.database).await?;
            store.close().await;
            println!("The database at {} is up to date.", settings.database.url);
            Ok(())
        }
        Command::Accounts {
            command: AccountsCommand::Create { name, balance },
        } => {
            let balance = Money::parse(&balance)
                .with_context(|| format!("`{balance}` is not an amount with at most 4 decimals"))?;
            let store = Store::open(&settings.database).await?;
            let result = async {
                let account = store
                    .create_account(NewAccount {
                        name: name.clone(),
                        balance,
                        currency: settings.accounts.default_currency.clone(),
                        daily_limit: settings.accounts.daily_limit,
                    })
                    .await?;
                let key = auth::generate_key();
                store.insert_api_key(&account, auth::hash_key(&key)).await?;
                println!("Created the account `{name}` ({account}). Its API key (shown once):");
                println!("{key}");
                anyhow::Ok(())
            }
            .await;
            store.close().await;
            result
        }
        Command::Campaign { remote, command } => {
            remote
                .run(settings, |client| async move {
                    match command {
                        CampaignCommand::Launch(launch) => campaign::launch(&client, launch).await,
                        CampaignCommand::Status {
                            campaign_id,
                            follow,
                        } => campaign::status(&client, &campaign_id, follow).await,
                    }
                })
                .await
        }
        Command::Send { remote, send } => {
            remote
                .run(
                    settings,
                    |client| async move { send::send(&client, send).await },
                )
                .await
        }
        Command::Keys {
            command: KeysCommand::Create { account },
        } => {
            let store = Store::open(&settings.database).await?;
            let result = async {
                let account_id = store.find_account(&account).await?;
                let key = auth::generate_key();
                store
                    .insert_api_key(&account_id, auth::hash_key(&key))
                    .await?;
                println!("A new API key for `{account}` ({account_id}), shown once:");
                println!("{key}");
                anyhow::Ok(())
            }
            .await;
            store.close().await;
            result
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn every_command_line_is_well_formed() {
        // clap checks its definitions only when a command is parsed; this checks all of
        // them (a clash between two commands' options would otherwise surface to a user).
        Cli::command().debug_assert();
    }
}
