//! `rekey role-plan` (SPEC section 9): from the CloudTrail events of a
//! user's keys, the roles that would replace the keys. Events are grouped
//! into consumers as [`crate::consumers`] does (source IP and user agent
//! program); each consumer's compute is told from what the events show
//! ([`compute`]); consumers that share compute (same kind, and the same
//! user agent or the same source address) make one proposal: a trust
//! policy for that compute and a permissions policy of exactly the actions
//! seen, each checked against the IAM catalogue ([`actions`]).
//!
//! Event history holds management events only, so the user's own policies
//! (the actions they allow) bound what a proposal may miss: per proposal,
//! `allowed_not_seen` lists what the policies allow and history cannot
//! show. Renderers: [`RolePlan::to_json`], [`RolePlan::to_text`],
//! [`RolePlan::to_cloudformation`], [`RolePlan::to_terraform`].

pub mod actions;
pub mod allowed;
pub mod compute;
mod render;

use crate::consumers::{program_of, TrailEvent};
use actions::{catalogue, iam_action, is_data_event, wildcard};
use compute::{classify, Seen, Verdict};
pub use compute::{Compute, Confidence, GitHubRef};
use jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One CloudTrail event of the user's keys, as a plan reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanEvent {
    pub time: Timestamp,
    /// `s3.amazonaws.com`.
    pub event_source: String,
    pub event_name: String,
    pub region: String,
    pub source_ip: String,
    pub user_agent: String,
    /// The ARNs the event names (its `resources[].ARN`); anything not an
    /// ARN is ignored.
    pub resources: Vec<String>,
    /// The event's `errorCode`: a denied call grants nothing in a plan.
    pub error_code: Option<String>,
    /// The event's `vpcEndpointId`.
    pub vpc_endpoint_id: Option<String>,
    /// False when the event's record could not be read: only what
    /// `LookupEvents` gives beside it (time, source, name, resources) is
    /// known, and the event belongs to an unknown consumer.
    pub readable: bool,
}

impl PlanEvent {
    /// A readable event from what [`TrailEvent`] holds, and the ARNs it names.
    pub fn from_trail(e: &TrailEvent, resources: Vec<String>) -> PlanEvent {
        PlanEvent {
            time: e.time,
            event_source: format!("{}.amazonaws.com", e.service),
            event_name: e.event_name.clone(),
            region: e.region.clone(),
            source_ip: e.source_ip.clone(),
            user_agent: e.user_agent.clone(),
            resources,
            error_code: None,
            vpc_endpoint_id: None,
            readable: true,
        }
    }
}

/// Roles that would replace a user's access keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolePlan {
    pub account_id: String,
    pub user_name: String,
    pub proposals: Vec<Proposal>,
    pub warnings: Vec<String>,
}

/// One role, for one consumer or a group of consumers sharing compute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proposal {
    pub compute: Compute,
    pub confidence: Confidence,
    pub evidence: Vec<String>,
    /// `USER-COMPUTE[-N]`; `None` for unknown compute, which gets no role.
    pub role_name: Option<String>,
    pub consumers: Vec<PlanConsumer>,
    /// `None` for unknown compute: no trust policy can be chosen.
    pub trust_policy: Option<PolicyDocument>,
    pub permissions_policy: PolicyDocument,
    pub unmapped_events: Vec<UnmappedEvent>,
    pub allowed_not_seen: Vec<String>,
    /// `lambda`, `github-actions-2`: the proposal's name among the others.
    #[serde(skip)]
    pub slug: String,
}

/// A program using the key: one source with one user agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanConsumer {
    pub source_ip: String,
    pub user_agent: String,
    pub calls: u64,
    pub last_seen: Timestamp,
}

/// Calls that map to no action of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct UnmappedEvent {
    pub event_source: String,
    pub event_name: String,
    pub calls: u64,
}

/// An IAM policy document, its keys in IAM's usual order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyDocument {
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "Statement")]
    pub statement: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    #[serde(rename = "Effect")]
    pub effect: String,
    /// `{"Service": "lambda.amazonaws.com"}`, in trust policies.
    #[serde(rename = "Principal", skip_serializing_if = "Option::is_none")]
    pub principal: Option<BTreeMap<String, String>>,
    #[serde(rename = "Action")]
    pub action: Vec<String>,
    #[serde(rename = "Resource", skip_serializing_if = "Option::is_none")]
    pub resource: Option<Vec<String>>,
    /// Operator → key → value.
    #[serde(rename = "Condition", skip_serializing_if = "BTreeMap::is_empty")]
    pub condition: BTreeMap<String, BTreeMap<String, String>>,
}

impl PolicyDocument {
    fn new(statement: Vec<Statement>) -> PolicyDocument {
        PolicyDocument { version: "2012-10-17".into(), statement }
    }
}

/// What a person must replace before using a proposal: every placeholder
/// starts with this.
pub const PLACEHOLDER: &str = "REPLACE_ME_";
/// The OIDC provider GitHub Actions tokens come from.
pub const GITHUB_OIDC: &str = "token.actions.githubusercontent.com";
/// Resources named for one action beyond which a statement takes `*`: a
/// role's inline policies hold 10,240 characters in all.
const MAX_ARNS: usize = 10;
/// IAM's limit on the inline policies of a role, in characters.
const POLICY_LIMIT: usize = 10_240;

/// Said when `build` is given no allowed action (the policies could not be
/// read): a caller that read policies allowing nothing says so instead.
pub const POLICIES_NOT_GIVEN: &str = "the user's policies were not given: allowed_not_seen cannot list what a proposal may miss";

/// Said in every plan: what CloudTrail event history cannot show.
pub const DATA_EVENTS_WARNING: &str = "CloudTrail event history holds management events only: data events (S3 object calls, \
Lambda Invoke, DynamoDB item calls, SQS and SNS messages, Kinesis records) are not in it, so no proposal grants them; \
each proposal's allowed_not_seen lists those the user's policies allow today: review them before moving a consumer to its role";

/// The command that plans the roles of a user's keys, to paste:
/// `rekey role-plan --user NAME --account ID`.
pub fn command(user_name: &str, account_id: &str) -> String {
    let quote = crate::notice::shell_quote;
    format!("rekey role-plan --user {} --account {}", quote(user_name), quote(account_id))
}

/// "N consumers, plan: `rekey role-plan ...`", where a scan read a role
/// candidate's consumers (`--consumers`).
pub fn hint(consumers: usize, user_name: &str, account_id: &str) -> String {
    let n = if consumers == 1 { "1 consumer".to_owned() } else { format!("{consumers} consumers") };
    format!("{n}, plan: `{}`", command(user_name, account_id))
}

/// A consumer while the plan is built.
struct Found<'a> {
    source_ip: &'a str,
    user_agent: String,
    readable: bool,
    events: Vec<&'a PlanEvent>,
    verdict: Verdict,
}

impl RolePlan {
    /// The plan for `user_name` in `account_id` from the events of its keys;
    /// `allowed` is the action patterns the user's policies allow
    /// (`s3:GetObject`, `s3:Get*`, `*`), empty when not known.
    pub fn build(account_id: &str, user_name: &str, events: &[PlanEvent], allowed: &[String]) -> RolePlan {
        let mut warnings = vec![DATA_EVENTS_WARNING.to_owned()];
        if events.is_empty() {
            warnings.push("no CloudTrail event of the user's keys in the period read: nothing to propose".into());
        }
        let found = found_consumers(events);
        let groups = share_compute(&found);
        let expanded = Expanded::new(allowed, &mut warnings);

        // Names: `USER-COMPUTE`, numbered when a compute has several proposals.
        let mut per_compute: BTreeMap<Compute, usize> = BTreeMap::new();
        for group in &groups {
            *per_compute.entry(found[group[0]].verdict.compute).or_default() += 1;
        }
        let mut numbered: BTreeMap<Compute, usize> = BTreeMap::new();
        let mut proposals = Vec::new();
        for group in &groups {
            let compute = found[group[0]].verdict.compute;
            let n = numbered.entry(compute).or_default();
            *n += 1;
            let slug = if per_compute[&compute] > 1 { format!("{compute}-{n}") } else { compute.to_string() };
            let members: Vec<&Found> = group.iter().map(|i| &found[*i]).collect();
            proposals.push(proposal(account_id, user_name, slug, &members, &expanded, &mut warnings));
        }
        expanded.warn_unlisted(&proposals, &mut warnings);
        RolePlan { account_id: account_id.to_owned(), user_name: user_name.to_owned(), proposals, warnings }
    }

    /// `--format json` (SPEC section 9).
    pub fn to_json(&self) -> String {
        // Plain data of strings and numbers: serializing cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Events grouped by (source IP, user agent program), as `consumers` groups
/// them; unreadable events are one consumer. Sorted by source, then agent.
fn found_consumers(events: &[PlanEvent]) -> Vec<Found<'_>> {
    let mut by_consumer: BTreeMap<(bool, &str, String), Vec<&PlanEvent>> = BTreeMap::new();
    for e in events {
        let key = if e.readable { (true, e.source_ip.as_str(), program_of(&e.user_agent)) } else { (false, "", String::new()) };
        by_consumer.entry(key).or_default().push(e);
    }
    by_consumer
        .into_iter()
        .map(|((readable, source_ip, user_agent), events)| {
            let vpc_endpoint = events.iter().find_map(|e| e.vpc_endpoint_id.as_deref());
            let verdict = classify(Seen { source_ip, user_agent: &user_agent, readable, vpc_endpoint });
            Found { source_ip, user_agent, readable, events, verdict }
        })
        .collect()
}

/// Consumers that clearly share compute: the same kind (and for GitHub
/// Actions the same repository), and the same user agent (one program
/// seen from several addresses, as Lambda functions are) or the same
/// address (one host running several programs). Each group lists indices
/// into `found`, ordered by compute, then by its first consumer.
fn share_compute(found: &[Found]) -> Vec<Vec<usize>> {
    let mut root: Vec<usize> = (0..found.len()).collect();
    fn find(root: &mut [usize], mut i: usize) -> usize {
        while root[i] != i {
            root[i] = root[root[i]];
            i = root[i];
        }
        i
    }
    for i in 0..found.len() {
        for j in i + 1..found.len() {
            let (a, b) = (&found[i], &found[j]);
            let same_kind = a.verdict.compute == b.verdict.compute && a.verdict.github == b.verdict.github && a.readable && b.readable;
            let same_agent = !a.user_agent.is_empty() && a.user_agent == b.user_agent;
            let same_host = a.source_ip.parse::<std::net::IpAddr>().is_ok() && a.source_ip == b.source_ip;
            if same_kind && (same_agent || same_host) {
                let (ri, rj) = (find(&mut root, i), find(&mut root, j));
                root[ri.max(rj)] = ri.min(rj);
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..found.len() {
        groups.entry(find(&mut root, i)).or_default().push(i);
    }
    let mut out: Vec<Vec<usize>> = groups.into_values().collect();
    out.sort_by_key(|g| (found[g[0]].verdict.compute, g[0]));
    out
}

/// The user's allowed action patterns, expanded against the catalogue once.
struct Expanded {
    /// (pattern has a wildcard, the actions it matches).
    patterns: Vec<(String, bool, Vec<String>)>,
}

impl Expanded {
    fn new(allowed: &[String], warnings: &mut Vec<String>) -> Expanded {
        if allowed.is_empty() {
            warnings.push(POLICIES_NOT_GIVEN.into());
        }
        let mut patterns = Vec::new();
        for pattern in allowed {
            let actions = catalogue().expand(pattern);
            if actions.is_empty() {
                warnings.push(format!("allowed action {pattern} matches no action in the IAM catalogue"));
            }
            patterns.push((pattern.clone(), pattern.contains(['*', '?']), actions));
        }
        Expanded { patterns }
    }

    /// What the policies allow and `seen` lacks: every action they name
    /// exactly, and the data-event actions their wildcards match (a
    /// wildcard's management actions would be in history had they been
    /// called; `s3:*` alone is 160 of them).
    fn not_seen(&self, seen: &BTreeSet<String>) -> Vec<String> {
        let mut out = BTreeSet::new();
        for (_, wild, actions) in &self.patterns {
            out.extend(actions.iter().filter(|a| (!wild || is_data_event(a)) && !seen.contains(*a)).cloned());
        }
        out.into_iter().collect()
    }

    fn allows(&self, action: &str) -> bool {
        self.patterns.iter().any(|(pattern, _, _)| wildcard(pattern, action, true))
    }

    /// Says how many actions the wildcards allow beyond those listed.
    fn warn_unlisted(&self, proposals: &[Proposal], warnings: &mut Vec<String>) {
        let seen: BTreeSet<&str> = proposals.iter().flat_map(|p| p.permissions_policy.statement.iter().flat_map(|s| s.action.iter().map(String::as_str))).collect();
        let wild: Vec<&str> = self.patterns.iter().filter(|(_, w, _)| *w).map(|(p, _, _)| p.as_str()).collect();
        let unlisted: BTreeSet<&str> = self
            .patterns
            .iter()
            .filter(|(_, w, _)| *w)
            .flat_map(|(_, _, actions)| actions.iter().map(String::as_str))
            .filter(|a| !is_data_event(a) && !seen.contains(a))
            .collect();
        if !unlisted.is_empty() {
            warnings.push(format!(
                "the user's policies allow {} more actions through wildcards ({}) that no consumer was seen calling; they are management actions, which history would show, so allowed_not_seen leaves them out",
                unlisted.len(),
                wild.join(", ")
            ));
        }
    }
}

/// One proposal from the consumers of a group.
fn proposal(account_id: &str, user_name: &str, slug: String, members: &[&Found], expanded: &Expanded, warnings: &mut Vec<String>) -> Proposal {
    let first = &members[0].verdict;
    let compute = first.compute;
    let confidence = members.iter().map(|m| m.verdict.confidence).max().unwrap_or(Confidence::Low);
    let mut consumers: Vec<PlanConsumer> = members
        .iter()
        .map(|m| PlanConsumer {
            source_ip: m.source_ip.to_owned(),
            user_agent: m.user_agent.clone(),
            calls: m.events.len() as u64,
            last_seen: m.events.iter().map(|e| e.time).max().unwrap_or_default(),
        })
        .collect();
    consumers.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.source_ip.cmp(&b.source_ip)).then_with(|| a.user_agent.cmp(&b.user_agent)));
    let mut evidence: Vec<String> = Vec::new();
    for m in members {
        for e in &m.verdict.evidence {
            if !evidence.contains(e) {
                evidence.push(e.clone());
            }
        }
    }
    let events: Vec<&PlanEvent> = members.iter().flat_map(|m| m.events.iter().copied()).collect();
    let role_name = (compute != Compute::Unknown).then(|| role_name(user_name, &slug));
    let label = role_name.clone().unwrap_or_else(|| format!("the {slug} proposal"));
    let region = most_frequent(events.iter().map(|e| e.region.as_str())).unwrap_or("us-east-1");
    let trust_policy = trust_policy(compute, account_id, region, first.github.as_ref());
    let (permissions_policy, seen, unmapped_events) = permissions(&label, &events, warnings);
    let allowed_not_seen = expanded.not_seen(&seen);

    let not_allowed: Vec<&str> = seen.iter().map(String::as_str).filter(|a| !expanded.patterns.is_empty() && !expanded.allows(a)).collect();
    if !not_allowed.is_empty() {
        warnings.push(format!("{label}: seen calling {} which the given policies do not allow (a policy not read, or a resource policy?)", not_allowed.join(", ")));
    }
    match compute {
        Compute::GithubActions => match &first.github {
            None => warnings.push(format!(
                "{label}: the user agent does not show the GitHub repository: replace {PLACEHOLDER}OWNER/{PLACEHOLDER}REPO and {PLACEHOLDER}BRANCH in the trust policy's {GITHUB_OIDC}:sub"
            )),
            Some(GitHubRef { branch: None, .. }) => {
                warnings.push(format!("{label}: the user agent does not show the branch: replace {PLACEHOLDER}BRANCH in the trust policy's {GITHUB_OIDC}:sub"))
            }
            Some(_) => {}
        },
        Compute::OutsideAws => warnings.push(format!(
            "{label}: replace {PLACEHOLDER}TRUST_ANCHOR_ID in the trust policy with the IAM Roles Anywhere trust anchor that its callers' certificates chain to"
        )),
        Compute::Eks => warnings.push(format!(
            "{label}: EKS Pod Identity needs an association of the role with the cluster, namespace and service account (aws eks create-pod-identity-association)"
        )),
        Compute::Unknown => warnings.push(format!("{label}: its compute is unknown, so it has no trust policy and is left out of the CloudFormation and Terraform output")),
        _ => {}
    }
    if permissions_policy.statement.is_empty() {
        warnings.push(format!("{label}: no call maps to an IAM action, so the role has no permissions policy"));
    }
    let size = serde_json::to_string(&permissions_policy).map(|s| s.len()).unwrap_or(0);
    if size > POLICY_LIMIT {
        warnings.push(format!("{label}: the permissions policy is {size} characters, over IAM's {POLICY_LIMIT} for a role's inline policies"));
    }
    Proposal { compute, confidence, evidence, role_name, consumers, trust_policy, permissions_policy, unmapped_events, allowed_not_seen, slug }
}

/// `USER-SLUG`, within IAM's 64 characters for a role name (the user's
/// name is cut, the slug kept).
fn role_name(user_name: &str, slug: &str) -> String {
    let room = 64usize.saturating_sub(slug.len() + 1);
    let user: String = user_name.chars().take(room).collect();
    format!("{user}-{slug}")
}

fn most_frequent<'a>(items: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for item in items.filter(|i| !i.is_empty()) {
        *counts.entry(item).or_default() += 1;
    }
    // The most frequent; on a tie, the first by name (max_by_key keeps the last).
    counts.into_iter().rev().max_by_key(|(_, n)| *n).map(|(item, _)| item)
}

/// The trust policy for a compute; `None` for unknown compute.
fn trust_policy(compute: Compute, account_id: &str, region: &str, github: Option<&GitHubRef>) -> Option<PolicyDocument> {
    let service = |principal: &str, actions: &[&str], condition: BTreeMap<String, BTreeMap<String, String>>| Statement {
        effect: "Allow".into(),
        principal: Some(BTreeMap::from([("Service".to_owned(), principal.to_owned())])),
        action: actions.iter().map(|a| (*a).to_owned()).collect(),
        resource: None,
        condition,
    };
    let statement = match compute {
        Compute::Lambda => service("lambda.amazonaws.com", &["sts:AssumeRole"], BTreeMap::new()),
        Compute::Ecs => service("ecs-tasks.amazonaws.com", &["sts:AssumeRole"], BTreeMap::new()),
        Compute::Ec2 => service("ec2.amazonaws.com", &["sts:AssumeRole"], BTreeMap::new()),
        Compute::Codebuild => service("codebuild.amazonaws.com", &["sts:AssumeRole"], BTreeMap::new()),
        Compute::Eks => service("pods.eks.amazonaws.com", &["sts:AssumeRole", "sts:TagSession"], BTreeMap::new()),
        Compute::OutsideAws => {
            let anchor = format!("arn:aws:rolesanywhere:{region}:{account_id}:trust-anchor/{PLACEHOLDER}TRUST_ANCHOR_ID");
            let condition = BTreeMap::from([("ArnEquals".to_owned(), BTreeMap::from([("aws:SourceArn".to_owned(), anchor)]))]);
            service("rolesanywhere.amazonaws.com", &["sts:AssumeRole", "sts:SetSourceIdentity", "sts:TagSession"], condition)
        }
        Compute::GithubActions => {
            let placeholder = |what: &str| format!("{PLACEHOLDER}{what}");
            let repository = github.map(|g| g.repository.clone()).unwrap_or_else(|| format!("{}/{}", placeholder("OWNER"), placeholder("REPO")));
            let branch = github.and_then(|g| g.branch.clone()).unwrap_or_else(|| placeholder("BRANCH"));
            let condition = BTreeMap::from([(
                "StringEquals".to_owned(),
                BTreeMap::from([
                    (format!("{GITHUB_OIDC}:aud"), "sts.amazonaws.com".to_owned()),
                    (format!("{GITHUB_OIDC}:sub"), format!("repo:{repository}:ref:refs/heads/{branch}")),
                ]),
            )]);
            Statement {
                effect: "Allow".into(),
                principal: Some(BTreeMap::from([("Federated".to_owned(), format!("arn:aws:iam::{account_id}:oidc-provider/{GITHUB_OIDC}"))])),
                action: vec!["sts:AssumeRoleWithWebIdentity".into()],
                resource: None,
                condition,
            }
        }
        Compute::Unknown => return None,
    };
    Some(PolicyDocument::new(vec![statement]))
}

/// Whether an error code says the call was refused for lack of permission.
fn denied(error_code: Option<&str>) -> bool {
    error_code.is_some_and(|c| c.contains("AccessDenied") || c.contains("Unauthorized"))
}

/// The permissions policy of the actions `events` needed, the set of those
/// actions, and the events that map to no action. An action is limited to
/// the ARNs its events name when every one of its events names one that
/// fits the action's resource types; otherwise it takes `*`.
fn permissions(label: &str, events: &[&PlanEvent], warnings: &mut Vec<String>) -> (PolicyDocument, BTreeSet<String>, Vec<UnmappedEvent>) {
    let mut by_action: BTreeMap<String, Vec<&PlanEvent>> = BTreeMap::new();
    let mut unmapped: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    for e in events {
        if denied(e.error_code.as_deref()) {
            *refused.entry(format!("{} {}", e.event_source, e.event_name)).or_default() += 1;
            continue;
        }
        match iam_action(&e.event_source, &e.event_name) {
            Some(action) => by_action.entry(action).or_default().push(e),
            None => *unmapped.entry((&e.event_source, &e.event_name)).or_default() += 1,
        }
    }
    if !refused.is_empty() {
        let list: Vec<String> = refused.iter().map(|(call, n)| format!("{call} ({n})")).collect();
        warnings.push(format!("{label}: calls the key was denied are left out of its permissions: {}", list.join(", ")));
    }
    let mut statements: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for (action, events) in &by_action {
        let fitting: Option<BTreeSet<&str>> = events
            .iter()
            .map(|e| {
                let fit: Vec<&str> = e.resources.iter().map(String::as_str).filter(|arn| catalogue().takes_arn(action, arn)).collect();
                (!fit.is_empty()).then_some(fit)
            })
            .collect::<Option<Vec<_>>>()
            .map(|fits| fits.into_iter().flatten().collect());
        let resources = match fitting {
            Some(arns) if arns.len() <= MAX_ARNS => arns.into_iter().map(str::to_owned).collect(),
            Some(arns) => {
                warnings.push(format!("{label}: {action} was called on {} resources, more than {MAX_ARNS}: it takes \"*\"", arns.len()));
                vec!["*".to_owned()]
            }
            None => vec!["*".to_owned()],
        };
        statements.entry(resources).or_default().push(action.clone());
    }
    let statement = statements
        .into_iter()
        .map(|(resource, action)| Statement { effect: "Allow".into(), principal: None, action, resource: Some(resource), condition: BTreeMap::new() })
        .collect();
    let unmapped = unmapped
        .into_iter()
        .map(|((source, name), calls)| UnmappedEvent { event_source: source.to_owned(), event_name: name.to_owned(), calls })
        .collect();
    (PolicyDocument::new(statement), by_action.into_keys().collect(), unmapped)
}

#[cfg(test)]
mod tests;
