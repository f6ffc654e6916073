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

impl KeyStatus {
    /// As IAM writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "Active",
            KeyStatus::Inactive => "Inactive",
        }
    }
}

/// The AWS partition of a region: `aws`, `aws-cn` or `aws-us-gov`, for ARNs.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
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
    /// The IAM groups the user is in; `None` until read (only `[[exempt]]`
    /// rules by group need them).
    pub groups: Option<Vec<String>>,
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
    // invariant: a valid timestamp truncated to the second stays valid
    Timestamp::from_second(t.as_second()).expect("a valid timestamp truncated stays valid")
}

/// A user's keys as `ListAccessKeys` just returned them (ids, status and
/// creation times are current), with the last use that the credential report
/// recorded for each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshedKeys {
    pub keys: Vec<AccessKey>,
    /// Keys created in the same second that the report describes with
    /// different last uses: which use is whose cannot be told, so those keys
    /// show their last use as unknown.
    pub indistinguishable: Vec<AccessKeyId>,
}

/// Takes `listed` (fresh, with ids) as the user's keys and gives each the
/// last use of the `reported` key it is: same creation second and status
/// first, then same creation second (the status changed since the report).
/// Each reported key is used once, never by column position. A key created
/// after the report has no reported last use; a deleted one is not listed.
pub fn refresh_keys(reported: &[AccessKey], mut listed: Vec<AccessKey>) -> RefreshedKeys {
    let mut matched = vec![false; listed.len()];
    let mut used = vec![false; reported.len()];
    let mut indistinguishable = Vec::new();
    let same_second = |a: &AccessKey, b: &AccessKey| whole_seconds(a.created_at) == whole_seconds(b.created_at);
    let same_second_and_status = |a: &AccessKey, b: &AccessKey| same_second(a, b) && a.status == b.status;
    type Same<'a> = &'a dyn Fn(&AccessKey, &AccessKey) -> bool;
    let passes: [Same; 2] = [&same_second_and_status, &same_second];
    for same in passes {
        for i in 0..listed.len() {
            if matched[i] {
                continue;
            }
            let twins: Vec<usize> = (0..listed.len()).filter(|&j| !matched[j] && same(&listed[j], &listed[i])).collect();
            let found: Vec<usize> = (0..reported.len()).filter(|&r| !used[r] && same(&reported[r], &listed[i])).collect();
            let Some(&first) = found.first() else { continue };
            let last_used = &reported[first].last_used;
            let agree = found.iter().all(|&r| reported[r].last_used == *last_used);
            for &j in &twins {
                if agree {
                    listed[j].last_used = last_used.clone();
                } else {
                    indistinguishable.extend(listed[j].id.clone());
                }
                matched[j] = true;
            }
            found.iter().for_each(|&r| used[r] = true);
        }
    }
    RefreshedKeys { keys: listed, indistinguishable }
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
            groups: None,
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

    fn listed(id: &str, created: &str, status: KeyStatus) -> AccessKey {
        AccessKey { id: Some(AccessKeyId::new(id)), status, created_at: ts(created), last_used: LastUsed::default() }
    }

    fn used_at(mut k: AccessKey, at: &str) -> AccessKey {
        k.last_used = LastUsed { at: Some(ts(at)), service: Some("s3".into()), region: None };
        k
    }

    #[test]
    fn keys_are_matched_by_creation_time_not_position() {
        let reported = vec![used_at(key("2026-01-01T00:00:00Z"), "2026-02-01T00:00:00Z"), key("2026-06-01T00:00:00Z")];
        let fresh = vec![
            listed("AKIASECOND", "2026-06-01T00:00:00.123456Z", KeyStatus::Active),
            listed("AKIAFIRST", "2026-01-01T00:00:00.999Z", KeyStatus::Active),
        ];
        let r = refresh_keys(&reported, fresh);
        assert_eq!(r.keys[1].id.as_ref().unwrap().as_str(), "AKIAFIRST");
        assert_eq!(r.keys[1].last_used.at, Some(ts("2026-02-01T00:00:00Z")));
        assert_eq!(r.keys[0].last_used, LastUsed::default());
        assert!(r.indistinguishable.is_empty());
    }

    #[test]
    fn the_listing_decides_which_keys_exist_and_their_status() {
        // Deactivated, deleted and created since the report.
        let reported = vec![used_at(key("2026-01-01T00:00:00Z"), "2026-02-01T00:00:00Z"), key("2026-03-01T00:00:00Z")];
        let fresh = vec![
            listed("AKIAOLD", "2026-01-01T00:00:00Z", KeyStatus::Inactive),
            listed("AKIANEW", "2026-11-28T00:00:00Z", KeyStatus::Active),
        ];
        let r = refresh_keys(&reported, fresh);
        assert_eq!(r.keys.len(), 2);
        assert_eq!(r.keys[0].status, KeyStatus::Inactive);
        assert_eq!(r.keys[0].last_used.at, Some(ts("2026-02-01T00:00:00Z")), "same key, status changed");
        assert_eq!(r.keys[1].last_used, LastUsed::default());
    }

    #[test]
    fn same_second_keys_are_told_apart_by_status() {
        // Regression: both keys got the first key's id, so the failing
        // Active key was printed under its Inactive sibling's id.
        let mut active = used_at(key("2026-01-01T00:00:00Z"), "2026-11-01T00:00:00Z");
        let mut inactive = key("2026-01-01T00:00:00Z");
        inactive.status = KeyStatus::Inactive;
        active.status = KeyStatus::Active;
        let fresh = vec![
            listed("AKIAINACTIVE", "2026-01-01T00:00:00Z", KeyStatus::Inactive),
            listed("AKIAACTIVE", "2026-01-01T00:00:00Z", KeyStatus::Active),
        ];
        let r = refresh_keys(&[active, inactive], fresh);
        assert_eq!(r.keys[1].last_used.at, Some(ts("2026-11-01T00:00:00Z")));
        assert_eq!(r.keys[0].last_used, LastUsed::default());
        assert!(r.indistinguishable.is_empty());
    }

    #[test]
    fn indistinguishable_keys_are_said_so_not_guessed() {
        let reported = vec![used_at(key("2026-01-01T00:00:00Z"), "2026-11-01T00:00:00Z"), key("2026-01-01T00:00:00Z")];
        let fresh = vec![
            listed("AKIAA", "2026-01-01T00:00:00Z", KeyStatus::Active),
            listed("AKIAB", "2026-01-01T00:00:00Z", KeyStatus::Active),
        ];
        let r = refresh_keys(&reported, fresh);
        assert_eq!(r.indistinguishable, [AccessKeyId::new("AKIAA"), AccessKeyId::new("AKIAB")]);
        assert!(r.keys.iter().all(|k| k.last_used == LastUsed::default()));
        // Twins the report describes alike need no guess.
        let alike = vec![key("2026-01-01T00:00:00Z"), key("2026-01-01T00:00:00Z")];
        let fresh = vec![
            listed("AKIAA", "2026-01-01T00:00:00Z", KeyStatus::Active),
            listed("AKIAB", "2026-01-01T00:00:00Z", KeyStatus::Active),
        ];
        assert!(refresh_keys(&alike, fresh).indistinguishable.is_empty());
    }
}
