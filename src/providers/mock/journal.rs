//! The mock network's journal: one line per event, appended with one `write` each (O_APPEND),
//! so a `kill -9` of Herald loses at most a torn last line, which reading skips.
//!
//! ```text
//! A <message id> <provider id> <unix ms> <to> <channel>   accepted
//! R <message id> <provider id> <unix ms>                  a replay of an accepted id, absorbed
//! F <message id> <unix ms> <code> <retry after ms>        refused (or timed out unaccepted)
//! D <unix ms>                                             receipts due up to then are in Herald
//! ```
//!
//! Tests and benchmarks count hand-overs per message id from it. The file is rotated once it
//! is older than the idempotency window (the previous one kept as `<path>.1`), so it holds
//! at least a window's worth of history and does not grow with every message ever sent.

use crate::domain::{Channel, Timestamp};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

pub(super) enum Entry<'a> {
    Accepted {
        message_id: &'a str,
        reference: &'a str,
        at_ms: i64,
        to: &'a str,
        channel: Channel,
    },
    Replay {
        message_id: &'a str,
        reference: &'a str,
        at_ms: i64,
    },
    Refused {
        message_id: &'a str,
        at_ms: i64,
        code: &'a str,
        retry_after_ms: u128,
    },
    Delivered {
        up_to_ms: i64,
    },
}

impl Entry<'_> {
    fn line(&self) -> String {
        match self {
            Entry::Accepted {
                message_id,
                reference,
                at_ms,
                to,
                channel,
            } => format!("A {message_id} {reference} {at_ms} {to} {channel}\n"),
            Entry::Replay {
                message_id,
                reference,
                at_ms,
            } => format!("R {message_id} {reference} {at_ms}\n"),
            Entry::Refused {
                message_id,
                at_ms,
                code,
                retry_after_ms,
            } => format!("F {message_id} {at_ms} {code} {retry_after_ms}\n"),
            Entry::Delivered { up_to_ms } => format!("D {up_to_ms}\n"),
        }
    }
}

/// What a start needs from the journal's past.
pub(super) enum Past {
    Accepted {
        message_id: String,
        at_ms: i64,
        to: String,
        channel: Channel,
    },
    Delivered {
        up_to_ms: i64,
    },
}

fn parse(line: &str) -> Option<Past> {
    let mut f = line.split(' ');
    match f.next()? {
        "A" => {
            let message_id = f.next()?.to_owned();
            let _reference = f.next()?;
            let at_ms = f.next()?.parse().ok()?;
            let to = f.next()?.to_owned();
            let channel = Channel::parse(f.next()?)?;
            Some(Past::Accepted {
                message_id,
                at_ms,
                to,
                channel,
            })
        }
        "D" => Some(Past::Delivered {
            up_to_ms: f.next()?.parse().ok()?,
        }),
        _ => None,
    }
}

pub(super) struct Journal {
    path: PathBuf,
    file: File,
    opened_ms: i64,
    rotate_after_ms: i64,
}

impl Journal {
    /// Opens the journal at `path` (creating it and its folder), and returns what the
    /// previous runs recorded, oldest first.
    pub(super) fn open(path: PathBuf, window_ms: i64) -> std::io::Result<(Journal, Vec<Past>)> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        let mut past = Vec::new();
        for file in [previous(&path), path.clone()] {
            match std::fs::read_to_string(&file) {
                Ok(text) => past.extend(text.lines().filter_map(parse)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let journal = Journal {
            path,
            file,
            opened_ms: Timestamp::now().millis(),
            rotate_after_ms: window_ms,
        };
        Ok((journal, past))
    }

    pub(super) fn append(&mut self, entry: &Entry<'_>) -> std::io::Result<()> {
        let now = Timestamp::now().millis();
        if now.saturating_sub(self.opened_ms) > self.rotate_after_ms {
            std::fs::rename(&self.path, previous(&self.path))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.opened_ms = now;
        }
        self.file.write_all(entry.line().as_bytes())
    }
}

fn previous(path: &std::path::Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_back_and_torn_lines_are_skipped() {
        let accepted = Entry::Accepted {
            message_id: "msg_1",
            reference: "mock-ab",
            at_ms: 42,
            to: "+14155550123",
            channel: Channel::Whatsapp,
        };
        let Some(Past::Accepted {
            message_id,
            at_ms,
            to,
            channel,
        }) = parse(accepted.line().trim_end())
        else {
            panic!("an accepted line reads back");
        };
        assert_eq!(
            (message_id.as_str(), at_ms, to.as_str(), channel),
            ("msg_1", 42, "+14155550123", Channel::Whatsapp)
        );
        assert!(matches!(
            parse("D 77"),
            Some(Past::Delivered { up_to_ms: 77 })
        ));
        assert!(parse("A msg_1 mock-ab 4").is_none(), "a torn line");
        assert!(parse("R msg_1 mock-ab 4").is_none(), "replays plan nothing");
    }
}
