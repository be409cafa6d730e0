//! Opaque, prefixed identifiers (`msg_…`, `acc_…`, `cmp_…`, `thr_…`, `key_…`).
//!
//! The suffix is a ULID, so ids sort by creation time (handy for cursors and for SQLite's
//! B-tree, which appends instead of splitting pages). A string that does not carry the right
//! prefix and a well-formed ULID is not an id of that kind: lookups answer 404 without
//! touching the database.

use std::fmt;
use std::sync::{Mutex, PoisonError};

/// One generator for every id this process makes: ids made later sort later, also within
/// one millisecond (a STOP and the confirmation it is answered with, listed in that order).
static GENERATOR: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());

/// A new ULID, greater than every one this process made before.
fn next_ulid() -> ulid::Ulid {
    let mut generator = GENERATOR.lock().unwrap_or_else(PoisonError::into_inner);
    // Fails only when 2^80 ids were made in one millisecond; a fresh random one then.
    generator.generate().unwrap_or_else(|_| ulid::Ulid::new())
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// A new, unique id.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, next_ulid()))
            }

            /// Accepts only `<prefix><ULID>`.
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix($prefix)?;
                ulid::Ulid::from_string(rest).ok()?;
                Some(Self(s.to_owned()))
            }

            /// Wraps a value read back from our own database.
            pub fn from_stored(s: String) -> Self {
                Self(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// A message (one recipient, one text).
    MessageId,
    "msg_"
);
prefixed_id!(
    /// An account: the tenant that owns keys, messages and a balance.
    AccountId,
    "acc_"
);
prefixed_id!(
    /// A campaign: one template sent to a list of recipients.
    CampaignId,
    "cmp_"
);
prefixed_id!(
    /// A conversation: one account, one channel, one remote number.
    ThreadId,
    "thr_"
);
prefixed_id!(
    /// An API key's public handle (the secret itself is never stored).
    ApiKeyId,
    "key_"
);

/// Consecutive message ids for a block of messages created in SQL (a campaign's fan-out
/// step), where binding one id per row would cost more than the insert itself.
///
/// A ULID's last 10 characters are exactly its 50 lowest bits, so fixing the first 16
/// (timestamp and 30 random bits) and counting up from a random 49-bit start gives valid,
/// distinct, ascending ids: id `i` is `prefix` followed by the base-32 digits of `start + i`.
#[derive(Debug, Clone)]
pub struct IdBlock {
    ulid: u128,
}

impl IdBlock {
    const LOW_BITS: u32 = 50;

    pub fn new() -> IdBlock {
        let low_mask = (1u128 << Self::LOW_BITS) - 1;
        let start = u128::from(rand::random::<u64>() & ((1 << 49) - 1));
        IdBlock {
            ulid: (ulid::Ulid::new().0 & !low_mask) | start,
        }
    }

    /// `msg_` and the 16 characters every id of the block shares.
    pub fn prefix(&self) -> String {
        let text = ulid::Ulid(self.ulid).to_string();
        format!("msg_{}", text.get(..16).unwrap_or_default())
    }

    /// The number the last 10 characters of the first id encode.
    pub fn start(&self) -> i64 {
        i64::try_from(self.ulid & ((1u128 << Self::LOW_BITS) - 1)).unwrap_or(0)
    }

    /// The `i`th id of the block.
    pub fn id(&self, i: u32) -> MessageId {
        MessageId(format!("msg_{}", ulid::Ulid(self.ulid + u128::from(i))))
    }

    /// The Crockford base-32 alphabet ULIDs are written in (the SQL side spells the digits).
    pub const ALPHABET: &'static str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
}

impl Default for IdBlock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_made_one_after_another_sort_in_that_order() {
        let ids: Vec<MessageId> = (0..1000).map(|_| MessageId::generate()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn an_id_block_counts_up_in_its_last_ten_characters() {
        let block = IdBlock::new();
        let first = block.id(0);
        let later = block.id(1_999);
        assert!(MessageId::parse(first.as_str()).is_some());
        assert!(MessageId::parse(later.as_str()).is_some());
        assert!(first < later);
        assert!(first.as_str().starts_with(&block.prefix()));
        assert!(
            later.as_str().starts_with(&block.prefix()),
            "no carry into the prefix"
        );
        let n = block.start() + 1_999;
        let digits: String = (0..10)
            .rev()
            .map(|k| {
                let d = usize::try_from((n >> (5 * k)) & 31).unwrap();
                IdBlock::ALPHABET.as_bytes()[d] as char
            })
            .collect();
        assert_eq!(later.as_str(), format!("{}{digits}", block.prefix()));
    }

    #[test]
    fn generated_ids_parse_back_and_foreign_strings_do_not() {
        let id = MessageId::generate();
        assert_eq!(MessageId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(AccountId::parse(id.as_str()), None);
        for bad in ["", "msg_", "msg_123", "custom_msg_1", "msg_' OR 1=1 --"] {
            assert_eq!(MessageId::parse(bad), None, "{bad}");
        }
    }
}
