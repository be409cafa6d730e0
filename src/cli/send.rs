//! `herald send`: one message from the command line, its id printed, and with `--follow` each
//! status it reaches, until a final one.

use super::client::{Client, at};
use crate::domain::MessageStatus;
use anyhow::bail;
use serde_json::{Value, json};
use std::time::Duration;

/// What `send` takes.
#[derive(Debug, clap::Args)]
pub(super) struct OneMessage {
    /// The recipient, in any format the API takes (`--country` for a local number).
    #[arg(long)]
    to: String,
    /// The text.
    #[arg(long, short)]
    message: String,
    /// sms (default) or whatsapp.
    #[arg(long)]
    channel: Option<String>,
    /// low, normal (default), high or urgent.
    #[arg(long)]
    priority: Option<String>,
    #[arg(long)]
    sender_id: Option<String>,
    /// ISO region for a number written without its country code.
    #[arg(long)]
    country: Option<String>,
    /// RFC 3339 time to send at.
    #[arg(long)]
    scheduled_at: Option<String>,
    /// Print each status the message reaches until a final one (read, failed, undelivered,
    /// expired, canceled); exits 1 if it ends failed.
    #[arg(long)]
    follow: bool,
    /// With --follow: give up waiting after this many seconds (SMS often stops at
    /// `delivered`: most networks report no read).
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

/// How often a followed message is looked at.
const POLL: Duration = Duration::from_millis(250);

pub(super) async fn send(client: &Client, send: OneMessage) -> anyhow::Result<()> {
    let mut body = json!({"phone_number": send.to, "message": send.message});
    for (key, value) in [
        ("channel", send.channel),
        ("priority", send.priority),
        ("sender_id", send.sender_id),
        ("country", send.country),
        ("scheduled_at", send.scheduled_at),
    ] {
        if let (Some(value), Some(object)) = (value, body.as_object_mut()) {
            object.insert(key.to_owned(), Value::String(value));
        }
    }
    let accepted = client.post_json("/send-message/", &body).await?;
    let Some(id) = at(&accepted, "message_id").as_str() else {
        bail!("Herald accepted the message but answered no message_id: {accepted}");
    };
    println!("{id}");
    if send.follow {
        follow(client, id, Duration::from_secs(send.timeout)).await?;
    }
    Ok(())
}

async fn follow(client: &Client, id: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut shown = 0;
    loop {
        let view = client.get(&format!("/message/{id}/status/")).await?;
        let history = at(&view, "history").as_array().cloned().unwrap_or_default();
        for entry in history.iter().skip(shown) {
            println!(
                "{:<11} {}",
                at(entry, "status").as_str().unwrap_or("?"),
                at(entry, "at").as_str().unwrap_or("")
            );
        }
        shown = shown.max(history.len());
        let status = at(&view, "status").as_str().and_then(MessageStatus::parse);
        if let Some(status) = status.filter(|s| s.is_terminal()) {
            if status.was_handed_over() && status != MessageStatus::Undelivered {
                return Ok(());
            }
            let code = at(&view, "error_code").as_str().unwrap_or("none");
            let why = at(&view, "error_message")
                .as_str()
                .unwrap_or("no reason given");
            bail!("the message ended {}: {why} ({code})", status.as_str());
        }
        if tokio::time::Instant::now() >= deadline {
            println!(
                "still {} after {} s; `herald send` stops following (the message goes on)",
                status.map_or("unknown", MessageStatus::as_str),
                timeout.as_secs()
            );
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
}
