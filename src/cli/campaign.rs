//! `herald campaign launch` and `herald campaign status`: a client of a running Herald's API.
//! The list is streamed from disk as it uploads, and the campaign is followed with a
//! progress bar until it completes, is canceled, or pauses.

use super::client::{Client, at};
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// What `campaign launch` takes.
#[derive(Debug, clap::Args)]
pub(super) struct Launch {
    #[arg(long, value_name = "FILE")]
    csv: PathBuf,
    /// A Handlebars template file.
    #[arg(long, value_name = "FILE")]
    template: PathBuf,
    #[arg(long)]
    name: String,
    /// low, normal (default), high or urgent.
    #[arg(long)]
    priority: Option<String>,
    /// sms (default) or whatsapp.
    #[arg(long)]
    channel: Option<String>,
    /// Defaults for every recipient, as a JSON object.
    #[arg(long, value_name = "JSON")]
    variables: Option<String>,
    /// RFC 3339 time to start at.
    #[arg(long)]
    scheduled_at: Option<String>,
    /// Validate and price the list without sending.
    #[arg(long)]
    dry_run: bool,
    /// Return once the campaign is created instead of following it.
    #[arg(long)]
    no_follow: bool,
}

pub(super) async fn launch(client: &Client, launch: Launch) -> anyhow::Result<()> {
    let template = tokio::fs::read_to_string(&launch.template)
        .await
        .with_context(|| format!("could not read the template {}", launch.template.display()))?;
    let file = tokio::fs::File::open(&launch.csv)
        .await
        .with_context(|| format!("could not open the list {}", launch.csv.display()))?;
    let mut query: Vec<(&str, String)> = vec![("name", launch.name), ("template", template)];
    for (key, value) in [
        ("priority", launch.priority),
        ("channel", launch.channel),
        ("variables", launch.variables),
        ("scheduled_at", launch.scheduled_at),
    ] {
        if let Some(value) = value {
            query.push((key, value));
        }
    }
    if launch.dry_run {
        query.push(("dry_run", "true".to_owned()));
    }
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
    let response = client
        .http
        .post(format!("{}/campaigns/upload", client.base))
        .bearer_auth(&client.key)
        .header("content-type", "text/csv")
        .query(&query)
        .body(body)
        .send()
        .await
        .with_context(|| format!("could not reach Herald at {}", client.base))?;
    let created = Client::answer(response).await?;
    println!(
        "{} recipients, {} accepted, {} rejected; estimated cost {} for {} segments.",
        at(&created, "recipients_total"),
        at(&created, "recipients_accepted"),
        at(&created, "rejected_count"),
        at(&created, "estimated_cost"),
        at(&created, "estimated_segments"),
    );
    if let Some(by_code) = at(&created, "rejected_by_code").as_object()
        && !by_code.is_empty()
    {
        let parts: Vec<String> = by_code.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        println!("Rejected: {}", parts.join(", "));
    }
    let Some(id) = at(&created, "campaign_id").as_str() else {
        println!("Dry run: nothing was sent.");
        return Ok(());
    };
    println!(
        "Campaign {id} is {}.",
        at(&created, "status").as_str().unwrap_or("?")
    );
    if !launch.no_follow {
        follow(client, id).await?;
    }
    Ok(())
}

/// Prints a campaign's state once, or follows it (`--follow`).
pub(super) async fn status(client: &Client, id: &str, keep_following: bool) -> anyhow::Result<()> {
    if keep_following {
        return follow(client, id).await;
    }
    let c = client.get(&format!("/campaigns/{id}")).await?;
    println!("{}", serde_json::to_string_pretty(&c).unwrap_or_default());
    Ok(())
}

/// A field of an answer; absent fields read as null (the server may be another version).
fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Shows a progress bar until the campaign completes, is canceled, or pauses.
async fn follow(client: &Client, id: &str) -> anyhow::Result<()> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} {msg} [{elapsed_precise}, {eta} left]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    loop {
        let c = client.get(&format!("/campaigns/{id}")).await?;
        let k = at(&c, "counters").clone();
        let accepted = n(at(&c, "recipients_accepted"));
        let waiting = n(at(&k, "queued")) + n(at(&k, "sending"));
        bar.set_length(accepted);
        bar.set_position(accepted.saturating_sub(waiting));
        bar.set_message(format!(
            "sent {} · delivered {} · failed {} · {:.0}/s",
            n(at(&k, "handed_over")),
            n(at(&k, "delivered")) + n(at(&k, "read")),
            n(at(&k, "failed")) + n(at(&k, "undelivered")) + n(at(&k, "expired")),
            at(&c, "send_rate").as_f64().unwrap_or(0.0),
        ));
        match at(&c, "status").as_str().unwrap_or("") {
            "completed" => {
                bar.finish_and_clear();
                // Printed, not drawn: indicatif draws nothing when stderr is not a terminal.
                println!(
                    "done: sent {} · delivered {} · read {} · failed {} · cost {}",
                    n(at(&k, "handed_over")),
                    n(at(&k, "delivered")) + n(at(&k, "read")),
                    n(at(&k, "read")),
                    n(at(&k, "failed")) + n(at(&k, "undelivered")) + n(at(&k, "expired")),
                    at(&c, "cost_so_far"),
                );
                return Ok(());
            }
            "canceled" => {
                bar.finish_and_clear();
                println!("canceled: sent {}", n(at(&k, "handed_over")));
                return Ok(());
            }
            "paused" => {
                bar.abandon();
                bail!(
                    "the campaign is paused ({}); resume it with POST /api/messaging/campaigns/{id}/resume",
                    at(&c, "pause_reason").as_str().unwrap_or("requested")
                );
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
