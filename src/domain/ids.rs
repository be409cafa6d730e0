//! Opaque, prefixed identifiers (`msg_…`, `acc_…`, `cmp_…`, `key_…`).
//!
//! The suffix is a ULID, so ids sort by creation time (handy for cursors and for SQLite's
//! B-tree, which appends instead of splitting pages). A string that does not carry the right
//! prefix and a well-formed ULID is not an id of that kind: lookups answer 404 without
//! touching the database.

use std::fmt;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// A new, unique id.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, ulid::Ulid::new()))
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
    /// An API key's public handle (the secret itself is never stored).
    ApiKeyId,
    "key_"
);

#[cfg(test)]
mod tests {
    use super::*;

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
