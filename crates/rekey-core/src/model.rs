//! What rekey knows about an account's IAM users and their access keys,
//! whichever source (credential report or API) it came from.

use jiff::Timestamp;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                $name(value.into())
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
    };
}

id_newtype!(
    /// A 12-digit AWS account id.
    AccountId
);
id_newtype!(
    /// An IAM user name (letters, digits and `+=,.@_-`).
    UserName
);
id_newtype!(
    /// An access key id (`AKIA...`). Not a secret; the secret access key never
    /// enters this model.
    AccessKeyId
);

impl AccountId {
    /// The account of an IAM ARN (`arn:aws:iam::123456789012:user/x`).
    pub fn from_arn(arn: &str) -> Option<Self> {
        arn.split(':').nth(4)?.parse().ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidId(String);

impl FromStr for AccountId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(AccountId::new(s))
        } else {
            Err(InvalidId(format!("{s:?} is not an AWS account id (12 digits)")))
        }
    }
}

impl FromStr for UserName {
    type Err = InvalidId;
    /// IAM's rule: 1 to 64 of letters, digits and `+=,.@_-`.
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c);
        if (1..=64).contains(&s.len()) && s.chars().all(allowed) {
            Ok(UserName::new(s))
        } else {
            Err(InvalidId(format!(
                "{s:?} is not an IAM user name (1 to 64 letters, digits and +=,.@_-)"
            )))
        }
    }
}

macro_rules! deserialize_from_str {
    ($($name:ident),*) => {$(
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
deserialize_from_str!(AccountId, UserName);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeyStatus {
    Active,
    Inactive,
}

/// The last recorded use of a key. AWS records only the first use in each
/// 15-minute window, and the credential report may lag by hours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastUsed {
    pub at: Option<Timestamp>,
    pub service: Option<String>,
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    /// Unknown when the key came from the credential report and nobody has
    /// listed the user's keys yet.
    pub id: Option<AccessKeyId>,
    pub status: KeyStatus,
    /// At whole-second precision: the credential report has no more, and
    /// both sources must agree.
    pub created_at: Timestamp,
    pub last_used: LastUsed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub account_id: AccountId,
    pub name: UserName,
    pub arn: String,
    /// `None` until the user's tags were read; tags are fetched only where
    /// an owner is needed, since each costs one call.
    pub tags: Option<Vec<(String, String)>>,
    pub keys: Vec<AccessKey>,
}

impl User {
    /// The owner: the value of the first tag of `owner_tags` that the user has.
    pub fn owner(&self, owner_tags: &[String]) -> Option<&str> {
        let tags = self.tags.as_ref()?;
        owner_tags.iter().find_map(|wanted| {
            tags.iter()
                .find(|(key, _)| key == wanted)
                .map(|(_, value)| value.as_str())
        })
    }
}

/// Truncates to whole seconds, the precision every source shares.
pub fn whole_seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).expect("a valid timestamp truncated stays valid")
}

/// Gives report-sourced keys the ids of `listed` keys (from `ListAccessKeys`),
/// matching by creation time (second precision), never by column position:
/// the report's key 1 and key 2 need not be in the order the API lists them.
pub fn match_key_ids(keys: &mut [AccessKey], listed: &[(AccessKeyId, Timestamp)]) {
    for key in keys.iter_mut().filter(|k| k.id.is_none()) {
        let created = whole_seconds(key.created_at);
        if let Some((id, _)) = listed.iter().find(|(_, t)| whole_seconds(*t) == created) {
            key.id = Some(id.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn key(created: &str) -> AccessKey {
        AccessKey {
            id: None,
            status: KeyStatus::Active,
            created_at: ts(created),
            last_used: LastUsed::default(),
        }
    }

    #[test]
    fn account_from_arn() {
        assert_eq!(
            AccountId::from_arn("arn:aws:iam::123456789012:user/a/b/c").unwrap().as_str(),
            "123456789012"
        );
        assert!(AccountId::from_arn("arn:aws:iam:::user/x").is_none());
        assert!(AccountId::from_arn("nonsense").is_none());
    }

    #[test]
    fn user_names_follow_iam_rules() {
        for ok in ["a", "ci-deployer", "svc+x=y,z.w@example_1-2", &"a".repeat(64)] {
            assert!(ok.parse::<UserName>().is_ok(), "{ok}");
        }
        for bad in ["", "has space", "slash/y", "ü", &"a".repeat(65)] {
            assert!(bad.parse::<UserName>().is_err(), "{bad}");
        }
        assert!("12345678901".parse::<AccountId>().is_err());
        assert!("12345678901a".parse::<AccountId>().is_err());
    }

    #[test]
    fn owner_is_first_configured_tag_present() {
        let mut user = User {
            account_id: AccountId::new("123456789012"),
            name: UserName::new("u"),
            arn: "arn:aws:iam::123456789012:user/u".into(),
            tags: None,
            keys: vec![],
        };
        let order = vec!["Owner".to_string(), "Team".to_string()];
        assert_eq!(user.owner(&order), None);
        user.tags = Some(vec![("Team".into(), "t".into()), ("Owner".into(), "o".into())]);
        assert_eq!(user.owner(&order), Some("o"));
        user.tags = Some(vec![("Team".into(), "t".into())]);
        assert_eq!(user.owner(&order), Some("t"));
        user.tags = Some(vec![("owner".into(), "lower".into())]);
        assert_eq!(user.owner(&order), None, "tag keys are case-sensitive");
    }

    #[test]
    fn ids_are_matched_by_creation_time_not_position() {
        let mut keys = vec![key("2026-01-01T00:00:00Z"), key("2026-06-01T00:00:00Z")];
        let listed = vec![
            (AccessKeyId::new("AKIASECOND"), ts("2026-06-01T00:00:00.123456Z")),
            (AccessKeyId::new("AKIAFIRST"), ts("2026-01-01T00:00:00.999Z")),
        ];
        match_key_ids(&mut keys, &listed);
        assert_eq!(keys[0].id.as_ref().unwrap().as_str(), "AKIAFIRST");
        assert_eq!(keys[1].id.as_ref().unwrap().as_str(), "AKIASECOND");
    }

    #[test]
    fn unmatched_keys_stay_unknown() {
        let mut keys = vec![key("2026-01-01T00:00:00Z")];
        match_key_ids(&mut keys, &[(AccessKeyId::new("AKIAOTHER"), ts("2026-01-02T00:00:00Z"))]);
        assert_eq!(keys[0].id, None);
    }
}
