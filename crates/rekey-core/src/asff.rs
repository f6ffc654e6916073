//! The scan in AWS Security Finding Format (`rekey scan --format asff`, and
//! rekey's own findings imported with `BatchImportFindings` where the IAM.3
//! control does not run): one finding per IAM user, as Security Hub's own
//! IAM.3 findings are, rated by the user's worst key.
//!
//! A finding's `Id` depends only on the account and user, so importing the
//! next scan updates the same finding instead of adding one. Security Hub
//! takes `Workflow` and `Note` from `BatchImportFindings` only when it creates
//! a finding; a suppression that arrives later needs `BatchUpdateFindings`.
//! For the same reason severity and types are also given in
//! `FindingProviderFields`, the place through which a provider updates them.

use crate::evaluate::Compliance;
use crate::model::{whole_seconds, KeyStatus};
use crate::owners::user_path;
use crate::report::{Exemption, KeyRow};
use jiff::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;

pub const SCHEMA_VERSION: &str = "2018-10-08";
pub const GENERATOR_ID: &str = "rekey/IAM.3";
pub const TITLE: &str = "IAM users' access keys should be rotated every 90 days or less";
pub const TYPE: &str = "Software and Configuration Checks/Industry and Regulatory Standards";

/// ASFF's length limits, in characters.
pub const DESCRIPTION_MAX: usize = 1024;
pub const NOTE_MAX: usize = crate::hub::NOTE_MAX_CHARS;
pub const PRODUCT_FIELD_MAX: usize = 2048;

/// Where and when the findings are generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsffContext {
    /// The Security Hub region the findings go to.
    pub region: String,
    pub generated_at: Timestamp,
    /// `aws`, `aws-cn` or `aws-us-gov`.
    pub partition: String,
}

impl AsffContext {
    /// The context for findings sent to Security Hub in `region`.
    pub fn new(region: &str, generated_at: Timestamp) -> AsffContext {
        AsffContext { region: region.to_owned(), generated_at, partition: crate::model::partition_of(region).to_owned() }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffFinding {
    pub schema_version: &'static str,
    pub id: String,
    pub product_arn: String,
    pub generator_id: &'static str,
    pub aws_account_id: String,
    pub types: Vec<&'static str>,
    pub created_at: String,
    pub updated_at: String,
    pub severity: Severity,
    pub finding_provider_fields: FindingProviderFields,
    pub title: &'static str,
    pub description: String,
    pub compliance: AsffCompliance,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<Workflow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<Note>,
    pub record_state: &'static str,
    pub resources: Vec<Resource>,
    pub product_fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Severity {
    /// `MEDIUM`, `LOW` or `INFORMATIONAL`.
    pub label: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FindingProviderFields {
    pub severity: Severity,
    pub types: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffCompliance {
    /// `FAILED`, `WARNING` or `PASSED`: ASFF has no `SUPPRESSED` status.
    pub status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Workflow {
    pub status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Note {
    pub text: String,
    pub updated_by: &'static str,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resource {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub id: String,
    pub partition: String,
    pub region: String,
    pub details: ResourceDetails,
}

/// Exactly one of the two is set, matching the resource's `Type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_iam_user: Option<IamUserDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_iam_access_key: Option<IamAccessKeyDetails>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IamUserDetails {
    pub user_name: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IamAccessKeyDetails {
    pub status: KeyStatus,
    pub created_at: String,
    pub principal_name: String,
}

/// One finding per (account, user) with keys in `rows`, in account and
/// user order.
pub fn findings(rows: &[KeyRow], ctx: &AsffContext) -> Vec<AsffFinding> {
    let mut users: BTreeMap<(&str, &str), Vec<&KeyRow>> = BTreeMap::new();
    for row in rows {
        users.entry((&row.account_id, &row.user_name)).or_default().push(row);
    }
    users.into_values().filter_map(|keys| finding(&keys, ctx)).collect()
}

/// The finding of one user's keys (all of the same account and user).
fn finding(keys: &[&KeyRow], ctx: &AsffContext) -> Option<AsffFinding> {
    // The worst key speaks for the user; among equals, the oldest.
    let worst = *keys.iter().min_by_key(|k| (k.result, k.created_at))?;
    let (account, user) = (&worst.account_id, &worst.user_name);
    let now = rfc3339(ctx.generated_at);
    let severity = Severity { label: severity_label(worst.result) };
    let suppressed = worst.result == Compliance::Suppressed;
    // The user's exemption, whichever of its rows carries it.
    let exemption = keys.iter().find_map(|k| k.exemption.as_ref());

    let user_resource = Resource {
        kind: "AwsIamUser",
        id: worst.user_arn.clone(),
        partition: ctx.partition.clone(),
        region: ctx.region.clone(),
        details: ResourceDetails {
            aws_iam_user: Some(IamUserDetails { user_name: user.clone(), path: user_path(&worst.user_arn).to_owned() }),
            aws_iam_access_key: None,
        },
    };
    let key_resources = keys.iter().filter_map(|k| {
        Some(Resource {
            kind: "AwsIamAccessKey",
            id: k.access_key_id.clone()?,
            partition: ctx.partition.clone(),
            region: ctx.region.clone(),
            details: ResourceDetails {
                aws_iam_user: None,
                aws_iam_access_key: Some(IamAccessKeyDetails {
                    status: k.status,
                    created_at: rfc3339(k.created_at),
                    principal_name: user.clone(),
                }),
            },
        })
    });

    Some(AsffFinding {
        schema_version: SCHEMA_VERSION,
        id: format!("rekey/IAM.3/{account}/{user}"),
        // The default product of a custom integration, which every account has.
        product_arn: format!("arn:{}:securityhub:{}:{account}:product/{account}/default", ctx.partition, ctx.region),
        generator_id: GENERATOR_ID,
        aws_account_id: account.clone(),
        types: vec![TYPE],
        created_at: now.clone(),
        updated_at: now.clone(),
        finding_provider_fields: FindingProviderFields { severity: severity.clone(), types: vec![TYPE] },
        severity,
        title: TITLE,
        description: description(&worst.reason),
        compliance: AsffCompliance { status: compliance_status(worst.result) },
        workflow: suppressed.then_some(Workflow { status: "SUPPRESSED" }),
        note: exemption.filter(|_| suppressed).map(|e| Note {
            text: truncate_chars(&note_text(e), NOTE_MAX),
            updated_by: "rekey",
            updated_at: now,
        }),
        record_state: "ACTIVE",
        resources: std::iter::once(user_resource).chain(key_resources).collect(),
        product_fields: product_fields(keys, worst),
    })
}

pub(crate) fn severity_label(result: Compliance) -> &'static str {
    match result {
        Compliance::Failed => "MEDIUM",
        Compliance::Warning => "LOW",
        Compliance::Suppressed | Compliance::Passed => "INFORMATIONAL",
    }
}

/// A suppressed user still fails the control; its workflow says it was
/// suppressed, as in Security Hub.
pub(crate) fn compliance_status(result: Compliance) -> &'static str {
    match result {
        Compliance::Failed | Compliance::Suppressed => "FAILED",
        Compliance::Warning => "WARNING",
        Compliance::Passed => "PASSED",
    }
}

/// ASFF requires a description; a reason is never empty, but the title
/// stands in if one were.
fn description(reason: &str) -> String {
    let text = if reason.trim().is_empty() { TITLE } else { reason };
    truncate_chars(text, DESCRIPTION_MAX)
}

fn note_text(e: &Exemption) -> String {
    let until = match e.until {
        Some(until) => format!("until {}", rfc3339(until)),
        None => "with no end date".to_owned(),
    };
    format!("Suppressed by {} {until}: {}", e.by(), e.reason)
}

fn product_fields(keys: &[&KeyRow], worst: &KeyRow) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut set = |name: &str, value: String| {
        fields.insert(format!("rekey/{name}"), truncate_chars(&value, PRODUCT_FIELD_MAX));
    };
    set("result", worst.result.as_str().to_owned());
    set("keys", keys.len().to_string());
    set("worst_key_age_days", worst.age_days.to_string());
    set("role_candidate", keys.iter().all(|k| k.role_candidate).to_string());
    if let Some(id) = &worst.access_key_id {
        set("worst_key_id", id.clone());
    }
    if let Some(owner) = &worst.owner {
        set("owner", owner.clone());
    }
    fields
}

/// RFC 3339 in UTC at whole seconds (`2026-11-28T12:00:00Z`), as ASFF
/// dates are written.
fn rfc3339(t: Timestamp) -> String {
    whole_seconds(t).to_string()
}

/// `s` cut to at most `max` characters (not bytes, so never inside one),
/// ending with `…` when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    if max > 0 {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::RotationRef;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn ctx() -> AsffContext {
        AsffContext {
            region: "eu-west-1".into(),
            generated_at: ts("2026-11-28T12:00:00.123456Z"),
            partition: "aws".into(),
        }
    }

    fn row(account: &str, user: &str, key: Option<&str>, result: Compliance, age_days: i64) -> KeyRow {
        KeyRow {
            account_id: account.into(),
            user_name: user.into(),
            user_arn: format!("arn:aws:iam::{account}:user/ci/{user}"),
            access_key_id: key.map(str::to_owned),
            status: KeyStatus::Active,
            created_at: ts("2026-11-28T12:00:00Z") - jiff::SignedDuration::from_hours(24 * age_days),
            age_days,
            last_used_at: None,
            last_used_service: None,
            last_used_region: None,
            owner: None,
            result,
            reason: format!("active key is {age_days} days old (limit 90)"),
            exemption: None,
            rotation: None,
            role_candidate: false,
            retire: false,
            role_reason: None,
            consumers: None,
        }
    }

    const A: &str = "111111111111";
    const B: &str = "222222222222";

    #[test]
    fn one_finding_per_user_rated_by_its_worst_key() {
        use Compliance::*;
        let rows = [
            row(B, "u", Some("AKIA1"), Passed, 10),
            row(A, "u", Some("AKIA2"), Warning, 80),
            row(A, "u", Some("AKIA3"), Failed, 200),
            row(A, "v", None, Passed, 5),
        ];
        let found = findings(&rows, &ctx());
        let ids: Vec<_> = found.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, [format!("rekey/IAM.3/{A}/u"), format!("rekey/IAM.3/{A}/v"), format!("rekey/IAM.3/{B}/u")]);
        let u = &found[0];
        assert_eq!((u.compliance.status, u.severity.label), ("FAILED", "MEDIUM"));
        assert_eq!(u.description, "active key is 200 days old (limit 90)");
        assert_eq!(u.product_fields["rekey/worst_key_age_days"], "200");
        assert_eq!(u.product_fields["rekey/worst_key_id"], "AKIA3");
        assert_eq!(u.product_fields["rekey/keys"], "2");
        let kinds: Vec<_> = u.resources.iter().map(|r| (r.kind, r.id.clone())).collect();
        let user_arn = format!("arn:aws:iam::{A}:user/ci/u");
        assert_eq!(
            kinds,
            [("AwsIamUser", user_arn), ("AwsIamAccessKey", "AKIA2".into()), ("AwsIamAccessKey", "AKIA3".into())]
        );
        assert_eq!(found[1].resources.len(), 1, "a key without an id is no resource");
        assert!(findings(&[], &ctx()).is_empty());
    }

    #[test]
    fn compliance_severity_and_workflow_for_each_result() {
        use Compliance::*;
        for (result, status, label, workflow) in [
            (Failed, "FAILED", "MEDIUM", None),
            (Warning, "WARNING", "LOW", None),
            (Passed, "PASSED", "INFORMATIONAL", None),
            (Suppressed, "FAILED", "INFORMATIONAL", Some("SUPPRESSED")),
        ] {
            let f = &findings(&[row(A, "u", Some("AKIA1"), result, 100)], &ctx())[0];
            assert_eq!(f.compliance.status, status, "{result:?}");
            assert_eq!(f.severity.label, label, "{result:?}");
            assert_eq!(f.finding_provider_fields.severity.label, label, "{result:?}");
            assert_eq!(f.workflow.as_ref().map(|w| w.status), workflow, "{result:?}");
            assert_eq!(f.product_fields["rekey/result"], result.as_str());
        }
    }

    #[test]
    fn suppressed_users_carry_their_exemption_as_a_note() {
        let mut r = row(A, "u", Some("AKIA1"), Compliance::Suppressed, 100);
        r.exemption = Some(Box::new(Exemption {
            reason: "vendor rotates it in Q1".into(),
            until: Some(ts("2027-01-31T00:00:00Z")),
            source: crate::report::ExemptionSource::Recorded { by: "alice".into() },
        }));
        let f = &findings(std::slice::from_ref(&r), &ctx())[0];
        let note = f.note.as_ref().unwrap();
        assert_eq!(note.text, "Suppressed by alice until 2027-01-31T00:00:00Z: vendor rotates it in Q1");
        assert_eq!((note.updated_by, note.updated_at.as_str()), ("rekey", "2026-11-28T12:00:00Z"));
        r.exemption.as_mut().unwrap().until = None;
        let f = &findings(std::slice::from_ref(&r), &ctx())[0];
        assert!(f.note.as_ref().unwrap().text.starts_with("Suppressed by alice with no end date: "));
        // An exemption on a user that fails anyway is not a suppression.
        r.result = Compliance::Failed;
        let f = &findings(&[r], &ctx())[0];
        assert!(f.note.is_none() && f.workflow.is_none());
    }

    #[test]
    fn ids_are_stable_across_runs() {
        let first = findings(&[row(A, "u", Some("AKIA1"), Compliance::Warning, 80)], &ctx());
        let later_ctx = AsffContext { generated_at: ts("2027-02-01T00:00:00Z"), ..ctx() };
        let later = findings(&[row(A, "u", Some("AKIA9"), Compliance::Failed, 120)], &later_ctx);
        assert_eq!(first[0].id, later[0].id);
        assert_eq!(first[0].id, format!("rekey/IAM.3/{A}/u"));
        assert_ne!(first[0].updated_at, later[0].updated_at);
    }

    #[test]
    fn json_is_asff() {
        let mut r = row(A, "ci-deployer", Some("AKIAEXAMPLE"), Compliance::Failed, 200);
        r.rotation = Some(Box::new(RotationRef { id: "r-1".into(), stage: "delivering".into(), retirement: false }));
        r.owner = Some("team-payments".into());
        let v = serde_json::to_value(&findings(&[r], &ctx())[0]).unwrap();
        assert_eq!(v["SchemaVersion"], "2018-10-08");
        assert_eq!(v["Id"], format!("rekey/IAM.3/{A}/ci-deployer"));
        assert_eq!(v["ProductArn"], format!("arn:aws:securityhub:eu-west-1:{A}:product/{A}/default"));
        assert_eq!(v["GeneratorId"], "rekey/IAM.3");
        assert_eq!(v["AwsAccountId"], A);
        assert_eq!(v["Types"], json!(["Software and Configuration Checks/Industry and Regulatory Standards"]));
        assert_eq!(v["CreatedAt"], "2026-11-28T12:00:00Z");
        assert_eq!(v["UpdatedAt"], "2026-11-28T12:00:00Z");
        assert_eq!(v["Severity"], json!({ "Label": "MEDIUM" }));
        assert_eq!(v["FindingProviderFields"]["Severity"]["Label"], "MEDIUM");
        assert_eq!(v["Title"], "IAM users' access keys should be rotated every 90 days or less");
        assert_eq!(v["Compliance"], json!({ "Status": "FAILED" }));
        assert_eq!(v["RecordState"], "ACTIVE");
        assert!(v.get("Workflow").is_none() && v.get("Note").is_none(), "omitted, not null");
        assert_eq!(
            v["Resources"][0],
            json!({
                "Type": "AwsIamUser",
                "Id": format!("arn:aws:iam::{A}:user/ci/ci-deployer"),
                "Partition": "aws",
                "Region": "eu-west-1",
                "Details": { "AwsIamUser": { "UserName": "ci-deployer", "Path": "/ci/" } }
            })
        );
        assert_eq!(v["Resources"][0]["Details"]["AwsIamUser"]["UserName"], "ci-deployer");
        assert_eq!(
            v["Resources"][1]["Details"],
            json!({ "AwsIamAccessKey": {
                "Status": "Active",
                "CreatedAt": "2026-05-12T12:00:00Z",
                "PrincipalName": "ci-deployer"
            } })
        );
        assert_eq!(v["ProductFields"]["rekey/owner"], "team-payments");
        assert_eq!(v["ProductFields"]["rekey/worst_key_age_days"], "200");
        let suppressed = Compliance::Suppressed;
        let v = serde_json::to_value(&findings(&[row(A, "u", None, suppressed, 100)], &ctx())[0]).unwrap();
        assert_eq!(v["Workflow"], json!({ "Status": "SUPPRESSED" }));
        assert!(v.get("Note").is_none(), "no exemption was given");
        assert!(v["Resources"].as_array().is_some_and(|r| r.len() == 1));
        assert!(!v.to_string().contains("null"), "{v}");
    }

    #[test]
    fn long_texts_are_cut_to_asff_limits() {
        let mut r = row(A, "u", Some("AKIA1"), Compliance::Suppressed, 100);
        r.reason = "x".repeat(5000);
        r.exemption = Some(Box::new(Exemption { source: crate::report::ExemptionSource::Recorded { by: "bob".into() }, reason: "é".repeat(600), until: None }));
        let f = &findings(&[r], &ctx())[0];
        assert_eq!(f.description.chars().count(), DESCRIPTION_MAX);
        let note = &f.note.as_ref().unwrap().text;
        assert_eq!(note.chars().count(), NOTE_MAX);
        assert!(note.ends_with("éé…"), "{note}");
    }

    #[test]
    fn truncation_counts_characters_not_bytes() {
        let s = "€".repeat(600);
        let cut = truncate_chars(&s, 512);
        assert_eq!(cut.chars().count(), 512);
        assert_eq!(cut, format!("{}…", "€".repeat(511)));
        assert_eq!(truncate_chars(&"€".repeat(512), 512), "€".repeat(512), "fits: not cut");
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "ab…");
        assert_eq!(truncate_chars("abcd", 1), "…");
        assert_eq!(truncate_chars("abcd", 0), "");
        assert_eq!(truncate_chars("", 0), "");
        let mixed = "a😀b".repeat(200);
        assert!(truncate_chars(&mixed, 512).chars().count() <= 512);
    }
}
