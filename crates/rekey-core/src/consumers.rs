//! Who uses a key: CloudTrail management events grouped into consumers by
//! (key, source IP, user agent, service), whether a consumer runs inside
//! AWS (then a role could replace the key), and whether the consumers of an
//! old key have moved to the new one (a drain may then go on by itself).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// One CloudTrail event, as far as rekey reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailEvent {
    pub access_key_id: String,
    pub time: Timestamp,
    pub event_name: String,
    /// `s3`, from the event source `s3.amazonaws.com`.
    pub service: String,
    pub region: String,
    pub source_ip: String,
    pub user_agent: String,
}

impl Consumer {
    /// `10.0.1.5 (aws-cli/2.15.0) calling s3 ListBuckets/GetObject, last 2026-11-28T09:00:00Z`.
    pub fn describe(&self) -> String {
        format!("{} ({}) calling {} {}, last {}", self.source_ip, self.user_agent, self.service, self.top_calls.join("/"), self.last_seen)
    }
}

impl TrailEvent {
    /// `s3.amazonaws.com` → `s3`.
    pub fn service_of(event_source: &str) -> String {
        event_source.strip_suffix(".amazonaws.com").unwrap_or(event_source).to_owned()
    }
}

/// A program using a key: the calls from one source with one user agent
/// to one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consumer {
    pub access_key_id: String,
    pub source_ip: String,
    pub user_agent: String,
    pub service: String,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub calls: u64,
    /// The most frequent calls, most frequent first (at most 3).
    pub top_calls: Vec<String>,
    /// The source or user agent says the caller runs on AWS compute.
    pub inside_aws: bool,
}

const TOP_CALLS: usize = 3;

/// A user agent without what changes from call to call: the SDKs'
/// `m/...` metrics token lists the features one request used, in any order.
pub fn program_of(user_agent: &str) -> String {
    user_agent.split_whitespace().filter(|token| !token.starts_with("m/")).collect::<Vec<_>>().join(" ")
}

/// Groups events into consumers, newest `last_seen` first.
pub fn consumers(events: &[TrailEvent]) -> Vec<Consumer> {
    let agents: Vec<String> = events.iter().map(|e| program_of(&e.user_agent)).collect();
    let mut groups: BTreeMap<(&str, &str, &str, &str), Vec<&TrailEvent>> = BTreeMap::new();
    for (e, agent) in events.iter().zip(&agents) {
        groups.entry((&e.access_key_id, &e.source_ip, agent, &e.service)).or_default().push(e);
    }
    let mut out: Vec<Consumer> = groups
        .into_iter()
        .map(|((key, ip, agent, service), events)| {
            let mut counts: HashMap<&str, u64> = HashMap::new();
            for e in &events {
                *counts.entry(&e.event_name).or_default() += 1;
            }
            let mut calls: Vec<(&str, u64)> = counts.into_iter().collect();
            calls.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            Consumer {
                access_key_id: key.to_owned(),
                source_ip: ip.to_owned(),
                user_agent: agent.to_owned(),
                service: service.to_owned(),
                first_seen: events.iter().map(|e| e.time).min().unwrap_or_default(),
                last_seen: events.iter().map(|e| e.time).max().unwrap_or_default(),
                calls: events.len() as u64,
                top_calls: calls.into_iter().take(TOP_CALLS).map(|(name, _)| name.to_owned()).collect(),
                inside_aws: platform(ip, agent).is_some(),
            }
        })
        .collect();
    out.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then_with(|| a.source_ip.cmp(&b.source_ip)));
    out
}

/// The AWS compute a caller runs on, from its user agent (the SDKs and the
/// CLI add `exec-env/...` from `AWS_EXECUTION_ENV`) or its source (calls
/// that AWS services make show the service's name instead of an address).
pub fn platform(source_ip: &str, user_agent: &str) -> Option<&'static str> {
    const AGENTS: &[(&str, &str)] = &[
        ("AWS_Lambda", "Lambda"),
        ("AWS_ECS", "ECS"),
        ("CodeBuild", "CodeBuild"),
        ("AWS_Glue", "Glue"),
        ("AWS_EC2", "EC2"),
        ("exec-env/EC2", "EC2"),
        ("CloudShell", "CloudShell"),
    ];
    const SOURCES: &[(&str, &str)] = &[
        ("lambda.amazonaws.com", "Lambda"),
        ("ecs-tasks.amazonaws.com", "ECS"),
        ("ecs.amazonaws.com", "ECS"),
        ("codebuild.amazonaws.com", "CodeBuild"),
        ("glue.amazonaws.com", "Glue"),
        ("ec2.amazonaws.com", "EC2"),
    ];
    AGENTS
        .iter()
        .find(|(mark, _)| user_agent.contains(mark))
        .or_else(|| SOURCES.iter().find(|(source, _)| source_ip == *source))
        .map(|(_, platform)| *platform)
}

/// Why a role could replace the key, when every consumer runs inside AWS.
pub fn role_reason(consumers: &[Consumer]) -> Option<String> {
    let mut platforms: Vec<&str> = Vec::new();
    for c in consumers {
        let p = platform(&c.source_ip, &c.user_agent)?;
        if !platforms.contains(&p) {
            platforms.push(p);
        }
    }
    let role = |p: &str| match p {
        "Lambda" => "an execution role",
        "ECS" => "a task role",
        "EC2" => "an instance profile",
        "CodeBuild" | "Glue" => "a service role",
        _ => "a role",
    };
    match platforms.as_slice() {
        [] => None,
        [one] => Some(format!("used only from {one}: {} removes the need for this key", role(one))),
        many => Some(format!("used only from {}: their roles remove the need for this key", many.join(" and "))),
    }
}

/// Where the consumers of an old key stand after delivery of the new one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Moves {
    /// Seen on the new key after their last use of the old one, and quiet
    /// on the old one since `quiet_since`.
    pub moved: Vec<Consumer>,
    /// Everything else seen on the old key since delivery.
    pub left: Vec<Consumer>,
}

/// Sorts the old key's consumers since delivery (SPEC section 8): a
/// consumer, known by source IP and user agent, has moved when it was seen
/// on the new key after its last use of the old one, and not on the old one
/// since `quiet_since` (now minus the drain window).
pub fn moves(old_since_delivery: &[Consumer], new_key: &[Consumer], quiet_since: Timestamp) -> Moves {
    let mut out = Moves::default();
    for old in old_since_delivery {
        let on_new = new_key.iter().any(|n| n.source_ip == old.source_ip && n.user_agent == old.user_agent && n.last_seen > old.last_seen);
        if on_new && old.last_seen < quiet_since {
            out.moved.push(old.clone());
        } else {
            out.left.push(old.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn event(key: &str, at: &str, name: &str, ip: &str, agent: &str) -> TrailEvent {
        TrailEvent {
            access_key_id: key.into(),
            time: ts(at),
            event_name: name.into(),
            service: "s3".into(),
            region: "us-east-1".into(),
            source_ip: ip.into(),
            user_agent: agent.into(),
        }
    }

    #[test]
    fn events_group_by_source_agent_and_service_newest_first() {
        let events = [
            event("AKIA1", "2026-11-20T10:00:00Z", "ListBuckets", "10.0.1.5", "aws-cli/2.15.0"),
            event("AKIA1", "2026-11-28T09:00:00Z", "GetObject", "10.0.1.5", "aws-cli/2.15.0"),
            event("AKIA1", "2026-11-27T09:00:00Z", "GetObject", "10.0.1.5", "aws-cli/2.15.0"),
            event("AKIA1", "2026-11-28T10:00:00Z", "PutObject", "10.0.9.9", "Boto3/1.34"),
        ];
        let c = consumers(&events);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].source_ip.as_str(), c[0].calls), ("10.0.9.9", 1), "the newest last use first");
        let cli = &c[1];
        assert_eq!((cli.calls, cli.first_seen, cli.last_seen), (3, ts("2026-11-20T10:00:00Z"), ts("2026-11-28T09:00:00Z")));
        assert_eq!(cli.top_calls, ["GetObject", "ListBuckets"]);
        assert!(!cli.inside_aws);
    }

    #[test]
    fn calls_of_one_program_are_one_consumer_whatever_features_they_used() {
        let a = "aws-cli/1.46.3 md/Botocore#1.43.62 ua/2.1 m/n,N,b,D,Z cfg/retry-mode#legacy botocore/1.43.62";
        let b = "aws-cli/1.46.3 md/Botocore#1.43.62 ua/2.1 m/D,Z,n,N,b cfg/retry-mode#legacy botocore/1.43.62";
        let c = consumers(&[event("AKIA1", "2026-11-28T09:00:00Z", "X", "10.0.0.1", a), event("AKIA1", "2026-11-28T09:01:00Z", "X", "10.0.0.1", b)]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].user_agent, "aws-cli/1.46.3 md/Botocore#1.43.62 ua/2.1 cfg/retry-mode#legacy botocore/1.43.62");
    }

    #[test]
    fn aws_compute_is_told_by_user_agent_or_source() {
        assert_eq!(platform("3.1.2.3", "aws-sdk-java/2.20 exec-env/AWS_Lambda_java17"), Some("Lambda"));
        assert_eq!(platform("3.1.2.3", "aws-cli/2.15.0 exec-env/AWS_ECS_FARGATE"), Some("ECS"));
        assert_eq!(platform("codebuild.amazonaws.com", "x"), Some("CodeBuild"));
        assert_eq!(platform("10.0.1.5", "aws-cli/2.15.0 Python/3.11.6 Linux/5.10"), None);
    }

    #[test]
    fn a_role_is_suggested_only_when_every_consumer_runs_inside_aws() {
        let lambda = consumers(&[event("AKIA1", "2026-11-28T09:00:00Z", "GetObject", "3.1.2.3", "Boto3 exec-env/AWS_Lambda_python3.12")]);
        assert_eq!(role_reason(&lambda).as_deref(), Some("used only from Lambda: an execution role removes the need for this key"));
        let mut mixed = lambda.clone();
        mixed.extend(consumers(&[event("AKIA1", "2026-11-28T09:00:00Z", "GetObject", "10.0.0.1", "aws-cli/2")]));
        assert_eq!(role_reason(&mixed), None);
        assert_eq!(role_reason(&[]), None, "no consumer, no evidence");
        let mut two = lambda;
        two.extend(consumers(&[event("AKIA1", "2026-11-28T09:00:00Z", "GetObject", "3.1.2.4", "aws-cli/2 exec-env/AWS_ECS_EC2")]));
        assert_eq!(role_reason(&two).as_deref(), Some("used only from Lambda and ECS: their roles remove the need for this key"));
    }

    #[test]
    fn a_consumer_moved_when_seen_on_the_new_key_after_the_old_and_quiet_since() {
        let old = consumers(&[
            event("OLD", "2026-11-28T10:00:00Z", "GetObject", "10.0.0.1", "app/1"),
            event("OLD", "2026-11-28T11:00:00Z", "GetObject", "10.0.0.2", "cron/1"),
        ]);
        let new = consumers(&[event("NEW", "2026-11-28T10:30:00Z", "GetObject", "10.0.0.1", "app/1")]);
        let m = moves(&old, &new, ts("2026-11-28T10:15:00Z"));
        assert_eq!(m.moved.iter().map(|c| c.source_ip.as_str()).collect::<Vec<_>>(), ["10.0.0.1"]);
        assert_eq!(m.left.iter().map(|c| c.source_ip.as_str()).collect::<Vec<_>>(), ["10.0.0.2"], "never seen on the new key");
        let too_recent = moves(&old, &new, ts("2026-11-28T09:00:00Z"));
        assert!(too_recent.moved.is_empty(), "used on the old key within the window: not moved yet");
        let before = consumers(&[event("NEW", "2026-11-28T09:30:00Z", "GetObject", "10.0.0.1", "app/1")]);
        assert!(moves(&old, &before, ts("2026-11-28T12:00:00Z")).moved.is_empty(), "the new key before its last old use is not a move");
    }
}
