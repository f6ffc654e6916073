//! The scan as OCSF (`rekey scan --format ocsf`): one Detection Finding
//! (class 2004, OCSF 1.5.0) per key, the class and version Prowler emits,
//! so a Security Lake, the new Security Hub or a SIEM can take rekey's
//! results next to Prowler's. The mapping is in `docs/reference.md`.
//!
//! Prowler's conventions are kept where a consumer might filter on them:
//! `status_code` is `FAIL` or `PASS`, a muted (here: exempt) finding is
//! `status_id` 3 (Suppressed) and keeps `FAIL`, and what OCSF has no field
//! for goes under `unmapped`. Times are OCSF's `timestamp_t`: milliseconds
//! since the epoch.

use crate::asff;
use crate::evaluate::Compliance;
use crate::model::partition_of;
use crate::report::KeyRow;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{json, Value};

pub const OCSF_VERSION: &str = "1.5.0";
const DETECTION_FINDING: u32 = 2004;
const FINDINGS_CATEGORY: u32 = 2;
/// Activity "Create": each scan states the findings anew, as Prowler's do.
const CREATE: u32 = 1;
const IAM3_DOCS: &str = "https://docs.aws.amazon.com/securityhub/latest/userguide/iam-controls.html#iam-3";

#[derive(Debug, Clone, Serialize)]
pub struct DetectionFinding {
    pub message: String,
    pub metadata: Metadata,
    pub severity_id: u32,
    pub severity: &'static str,
    pub status: &'static str,
    pub status_code: &'static str,
    pub status_detail: String,
    pub status_id: u32,
    pub unmapped: Value,
    pub activity_name: &'static str,
    pub activity_id: u32,
    pub finding_info: FindingInfo,
    pub resources: Vec<Resource>,
    pub category_name: &'static str,
    pub category_uid: u32,
    pub class_name: &'static str,
    pub class_uid: u32,
    pub cloud: Cloud,
    pub remediation: Remediation,
    pub time: i64,
    pub time_dt: String,
    pub type_uid: u32,
    pub type_name: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Metadata {
    pub event_code: &'static str,
    pub product: Product,
    pub profiles: [&'static str; 2],
    pub version: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Product {
    pub name: &'static str,
    pub uid: &'static str,
    pub vendor_name: &'static str,
    pub version: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct FindingInfo {
    pub created_time: i64,
    pub created_time_dt: String,
    pub desc: String,
    pub title: &'static str,
    pub types: [&'static str; 1],
    pub uid: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resource {
    pub cloud_partition: &'static str,
    pub region: String,
    pub data: Value,
    pub group: Group,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub uid: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub name: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cloud {
    pub account: Account,
    pub provider: &'static str,
    pub region: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Account {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub type_id: u32,
    pub uid: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Remediation {
    pub desc: String,
    pub references: [&'static str; 1],
}

/// One finding per key, in the report's order. `region` is the Security
/// Hub region, which ASFF findings name too (IAM has none).
pub fn findings(rows: &[KeyRow], generated_at: Timestamp, region: &str) -> Vec<DetectionFinding> {
    rows.iter().map(|row| finding(row, generated_at, region)).collect()
}

fn finding(row: &KeyRow, generated_at: Timestamp, region: &str) -> DetectionFinding {
    let (severity_id, severity) = severity(row.result);
    let (status_id, status) = status(row);
    let time = generated_at.as_millisecond();
    let time_dt = crate::model::whole_seconds(generated_at).to_string();
    // The key's id is unknown for a PASSED key the report alone described;
    // its creation time tells it from the user's other key.
    let key = row.access_key_id.clone().unwrap_or_else(|| format!("created-{}", row.created_at));
    DetectionFinding {
        message: row.reason.clone(),
        metadata: Metadata {
            event_code: "IAM.3",
            product: Product { name: "rekey", uid: "rekey", vendor_name: "rekey", version: env!("CARGO_PKG_VERSION") },
            profiles: ["cloud", "datetime"],
            version: OCSF_VERSION,
        },
        severity_id,
        severity,
        status,
        status_code: status_code(row.result),
        status_detail: row.reason.clone(),
        status_id,
        unmapped: json!({
            "rekey": {
                "result": row.result,
                "exemption": row.exemption,
                "rotation": row.rotation,
                "retire": row.retire,
                "role_candidate": row.role_candidate,
            },
            "compliance": {"control": "IAM.3", "standard": "AWS Foundational Security Best Practices"},
        }),
        activity_name: "Create",
        activity_id: CREATE,
        finding_info: FindingInfo {
            created_time: time,
            created_time_dt: time_dt.clone(),
            desc: asff::TITLE.to_owned(),
            title: asff::TITLE,
            types: [asff::TYPE],
            uid: format!("rekey-aws-iam.3-{}-{}-{key}", row.account_id, row.user_name),
        },
        resources: vec![Resource {
            cloud_partition: partition_of(region),
            region: region.to_owned(),
            data: json!({
                "access_key_id": row.access_key_id,
                "status": row.status,
                "created_at": row.created_at,
                "age_days": row.age_days,
                "last_used_at": row.last_used_at,
                "last_used_service": row.last_used_service,
                "last_used_region": row.last_used_region,
            }),
            group: Group { name: "iam" },
            labels: row.owner.iter().map(|o| format!("owner:{o}")).collect(),
            name: row.user_name.clone(),
            kind: "AwsIamUser",
            uid: row.user_arn.clone(),
        }],
        category_name: "Findings",
        category_uid: FINDINGS_CATEGORY,
        class_name: "Detection Finding",
        class_uid: DETECTION_FINDING,
        cloud: Cloud {
            account: Account { name: row.account_id.clone(), kind: "AWS Account", type_id: 10, uid: row.account_id.clone() },
            provider: "aws",
            region: region.to_owned(),
        },
        remediation: Remediation { desc: remediation(row), references: [IAM3_DOCS] },
        time,
        time_dt,
        type_uid: DETECTION_FINDING * 100 + CREATE,
        type_name: "Detection Finding: Create",
    }
}

/// The severity ASFF gives the same result (IAM.3 is MEDIUM), as an OCSF
/// severity id and name.
fn severity(result: Compliance) -> (u32, &'static str) {
    match asff::severity_label(result) {
        "MEDIUM" => (3, "Medium"),
        "LOW" => (2, "Low"),
        _ => (1, "Informational"),
    }
}

/// Suppressed when exempt (Prowler's "muted"), In Progress while a
/// rotation works on the key, else New.
fn status(row: &KeyRow) -> (u32, &'static str) {
    match (row.result, &row.rotation) {
        (Compliance::Suppressed, _) => (3, "Suppressed"),
        (_, Some(_)) => (2, "In Progress"),
        _ => (1, "New"),
    }
}

/// Prowler's words for Security Hub's compliance status, which rekey's ASFF
/// gives too: an exempt key still fails (an exemption mutes a failure, as
/// Security Hub's SUPPRESSED workflow does), a WARNING key still passes.
fn status_code(result: Compliance) -> &'static str {
    match asff::compliance_status(result) {
        "FAILED" => "FAIL",
        _ => "PASS",
    }
}

fn remediation(row: &KeyRow) -> String {
    let command = if row.retire { "retire" } else { "rotate" };
    format!(
        "Replace the key without breaking its application: rekey {command} --user {} --account {} (or use a role; rekey role-plan --user {} --account {})",
        row.user_name, row.account_id, row.user_name, row.account_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KeyStatus;
    use crate::report::{Exemption, ExemptionSource, RotationRef};

    const NOW: &str = "2026-11-28T12:00:00.123Z";

    fn row(key: Option<&str>, result: Compliance) -> KeyRow {
        KeyRow {
            account_id: "111111111111".into(),
            user_name: "ci".into(),
            user_arn: "arn:aws:iam::111111111111:user/ci".into(),
            access_key_id: key.map(str::to_owned),
            status: KeyStatus::Active,
            created_at: "2026-01-01T00:00:00Z".parse().unwrap(),
            age_days: 331,
            last_used_at: None,
            last_used_service: Some("s3".into()),
            last_used_region: None,
            owner: Some("team-a".into()),
            result,
            reason: "active key is 331 days old (limit 90)".into(),
            exemption: None,
            rotation: None,
            role_candidate: false,
            retire: false,
            role_reason: None,
            consumers: None,
        }
    }

    fn one(row: KeyRow) -> Value {
        serde_json::to_value(&findings(&[row], NOW.parse().unwrap(), "eu-west-1")[0]).unwrap()
    }

    #[test]
    fn a_failed_key_is_a_medium_detection_finding_that_fails() {
        let v = one(row(Some("AKIAOLD"), Compliance::Failed));
        assert_eq!((v["class_uid"].as_u64(), v["category_uid"].as_u64(), v["type_uid"].as_u64()), (Some(2004), Some(2), Some(200401)));
        assert_eq!((v["severity_id"].as_u64(), v["severity"].as_str()), (Some(3), Some("Medium")));
        assert_eq!((v["status_code"].as_str(), v["status_id"].as_u64(), v["status"].as_str()), (Some("FAIL"), Some(1), Some("New")));
        assert_eq!(v["metadata"]["version"], "1.5.0");
        assert_eq!(v["metadata"]["event_code"], "IAM.3");
        assert_eq!(v["time"].as_i64(), Some(1_795_867_200_123), "milliseconds, as OCSF's timestamp_t");
        assert_eq!(v["time_dt"], "2026-11-28T12:00:00Z");
        assert_eq!(v["finding_info"]["uid"], "rekey-aws-iam.3-111111111111-ci-AKIAOLD");
        assert_eq!(v["resources"][0]["uid"], "arn:aws:iam::111111111111:user/ci");
        assert_eq!(v["resources"][0]["labels"], json!(["owner:team-a"]));
        assert_eq!(v["resources"][0]["data"]["access_key_id"], "AKIAOLD");
        assert_eq!(v["cloud"]["account"]["uid"], "111111111111");
        assert!(v["remediation"]["desc"].as_str().unwrap().contains("rekey rotate --user ci --account 111111111111"));
    }

    #[test]
    fn each_result_maps_to_prowlers_status_and_asffs_severity() {
        use Compliance::*;
        for (result, code, severity, status) in [
            (Failed, "FAIL", "Medium", "New"),
            (Warning, "PASS", "Low", "New"),
            (Passed, "PASS", "Informational", "New"),
            (Suppressed, "FAIL", "Informational", "Suppressed"),
        ] {
            let v = one(row(Some("AKIA1"), result));
            assert_eq!((v["status_code"].as_str(), v["severity"].as_str(), v["status"].as_str()), (Some(code), Some(severity), Some(status)), "{result:?}");
            assert_eq!(v["unmapped"]["rekey"]["result"], result.as_str());
        }
    }

    #[test]
    fn a_rotation_under_way_is_in_progress_and_an_exemption_is_carried() {
        let mut r = row(Some("AKIA1"), Compliance::Failed);
        r.rotation = Some(Box::new(RotationRef { id: "rot-1".into(), stage: "draining".into(), retirement: false }));
        let v = one(r);
        assert_eq!((v["status_id"].as_u64(), v["status"].as_str()), (Some(2), Some("In Progress")));
        assert_eq!(v["unmapped"]["rekey"]["rotation"]["id"], "rot-1");

        let mut r = row(Some("AKIA1"), Compliance::Suppressed);
        r.exemption = Some(Box::new(Exemption { source: ExemptionSource::Rule { rule: 2 }, reason: "vendor box".into(), until: None }));
        let exemption = &one(r)["unmapped"]["rekey"]["exemption"];
        assert_eq!((exemption["source"].as_str(), exemption["rule"].as_u64(), exemption["reason"].as_str()), (Some("rule"), Some(2), Some("vendor box")));
    }

    #[test]
    fn a_key_without_an_id_gets_a_stable_uid_from_its_creation_time() {
        let v = one(row(None, Compliance::Passed));
        assert_eq!(v["finding_info"]["uid"], "rekey-aws-iam.3-111111111111-ci-created-2026-01-01T00:00:00Z");
        assert!(v["resources"][0]["data"]["access_key_id"].is_null());
    }
}
