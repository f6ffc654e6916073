//! Security Hub: IAM.3 findings read with server-side filters, and updated
//! (workflow status, note) in batches of at most 100. Findings are matched
//! to users by the IAM user resource they name.

use crate::error::{classify, AwsError};
use crate::Clients;
use aws_sdk_securityhub::types::{
    AwsSecurityFinding, AwsSecurityFindingFilters, AwsSecurityFindingIdentifier, NoteUpdate, StringFilter, StringFilterComparison,
    WorkflowStatus, WorkflowUpdate,
};
use crate::pace::{Pacer, SECURITY_HUB_READ, SECURITY_HUB_UPDATE};
use rekey_core::hub::Workflow;
use std::sync::Arc;

/// Security Hub's limit on identifiers in one `BatchUpdateFindings`.
pub const UPDATE_BATCH: usize = 100;
/// Security Hub's limit on values of one filter field.
const FILTER_VALUES: usize = 20;

pub struct SecurityHub {
    client: aws_sdk_securityhub::Client,
    endpoint: String,
    /// Security Hub's quotas in this account and region, shared with every
    /// other caller in the process (see [`crate::pace`]).
    read_pace: Arc<Pacer>,
    update_pace: Arc<Pacer>,
}

/// Which IAM.3 findings to read.
#[derive(Debug, Clone, Default)]
pub struct FindingQuery {
    pub account_id: Option<String>,
    /// Only these users' findings (at most 20 names go to the server as a
    /// filter; more read the account's IAM.3 findings and keep these).
    pub users: Vec<String>,
    pub workflow: Vec<Workflow>,
    /// `FAILED`, `PASSED`, `WARNING`, `NOT_AVAILABLE`.
    pub compliance: Vec<String>,
}

/// An IAM.3 finding about one IAM user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub id: String,
    pub product_arn: String,
    pub account_id: String,
    pub user_name: String,
    pub compliance_status: Option<String>,
    pub workflow_status: Workflow,
    pub note: Option<String>,
}

/// What `BatchUpdateFindings` could not update, by finding id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unprocessed {
    pub finding_id: String,
    pub code: String,
    pub message: String,
}

impl SecurityHub {
    pub fn new(clients: &Clients, region: Option<&str>) -> Self {
        let mut config = crate::client::common_layers!(aws_sdk_securityhub::config::Builder::from(clients.sdk_config()), clients);
        if let Some(region) = region {
            config = config.region(aws_config::Region::new(region.to_owned()));
        }
        let region = region.map_or_else(|| clients.region(), str::to_owned);
        SecurityHub {
            client: aws_sdk_securityhub::Client::from_conf(config.build()),
            endpoint: clients.endpoint(),
            read_pace: clients.pacer("securityhub:GetFindings", &region, SECURITY_HUB_READ),
            update_pace: clients.pacer("securityhub:BatchUpdateFindings", &region, SECURITY_HUB_UPDATE),
        }
    }

    /// Active IAM.3 findings about IAM users that match `query`, every page.
    pub async fn iam3_findings(&self, query: &FindingQuery) -> Result<Vec<Finding>, AwsError> {
        let by_name = !query.users.is_empty() && query.users.len() <= FILTER_VALUES;
        let mut filters = AwsSecurityFindingFilters::builder()
            .set_compliance_security_control_id(Some(vec![equals("IAM.3")]))
            .set_record_state(Some(vec![equals("ACTIVE")]))
            .set_resource_type(Some(vec![equals("AwsIamUser")]));
        if let Some(account) = &query.account_id {
            filters = filters.set_aws_account_id(Some(vec![equals(account)]));
        }
        if by_name {
            // Every IAM.3 finding names its user by ARN (`Resources[].Id`);
            // whether it also carries `Details.AwsIamUser.UserName` is not
            // documented. The ARN's path is unknown here, so the filter is
            // "contains /NAME" and the exact name is checked below.
            filters = filters.set_resource_id(Some(query.users.iter().map(|u| contains(&format!("/{u}"))).collect()));
        }
        if !query.workflow.is_empty() {
            filters = filters.set_workflow_status(Some(query.workflow.iter().map(|w| equals(w.as_str())).collect()));
        }
        if !query.compliance.is_empty() {
            filters = filters.set_compliance_status(Some(query.compliance.iter().map(|c| equals(c)).collect()));
        }
        let filters = filters.build();

        let mut findings = Vec::new();
        let mut token = None;
        loop {
            self.read_pace.ready().await;
            let page = self
                .client
                .get_findings()
                .filters(filters.clone())
                .max_results(100)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| classify("securityhub:GetFindings", &self.endpoint, e))?;
            findings.extend(page.findings().iter().filter_map(finding));
            token = page.next_token().filter(|t| !t.is_empty()).map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        if !query.users.is_empty() {
            findings.retain(|f| query.users.contains(&f.user_name));
        }
        Ok(findings)
    }

    /// One `BatchUpdateFindings` of at most [`UPDATE_BATCH`] findings: the
    /// note on all, the workflow status if given. Returns what was not updated.
    pub async fn update(&self, findings: &[&Finding], workflow: Option<Workflow>, note: &str, by: &str) -> Result<Vec<Unprocessed>, AwsError> {
        assert!(findings.len() <= UPDATE_BATCH, "callers batch by {UPDATE_BATCH}");
        let ids = findings.iter().map(|f| AwsSecurityFindingIdentifier::builder().id(&f.id).product_arn(&f.product_arn).build()).collect();
        let note = NoteUpdate::builder().text(note).updated_by(by).build();
        let mut call = self.client.batch_update_findings().set_finding_identifiers(Some(ids)).note(note);
        self.update_pace.ready().await;
        if let Some(w) = workflow {
            call = call.workflow(WorkflowUpdate::builder().status(WorkflowStatus::from(w.as_str())).build());
        }
        let out = call.send().await.map_err(|e| classify("securityhub:BatchUpdateFindings", &self.endpoint, e))?;
        Ok(out
            .unprocessed_findings()
            .iter()
            .map(|u| Unprocessed {
                finding_id: u.finding_identifier().and_then(|i| i.id()).unwrap_or_default().to_owned(),
                code: u.error_code().unwrap_or("Unknown").to_owned(),
                message: u.error_message().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    /// One `BatchImportFindings` of at most 100 findings; returns the ids
    /// Security Hub refused, with why.
    pub async fn import(&self, findings: Vec<AwsSecurityFinding>) -> Result<Vec<Unprocessed>, AwsError> {
        let out = self
            .client
            .batch_import_findings()
            .set_findings(Some(findings))
            .send()
            .await
            .map_err(|e| classify("securityhub:BatchImportFindings", &self.endpoint, e))?;
        Ok(out
            .failed_findings()
            .iter()
            .map(|f| Unprocessed {
                finding_id: f.id().unwrap_or_default().to_owned(),
                code: f.error_code().unwrap_or("Unknown").to_owned(),
                message: f.error_message().unwrap_or_default().to_owned(),
            })
            .collect())
    }
}

fn equals(value: &str) -> StringFilter {
    StringFilter::builder().value(value).comparison(StringFilterComparison::Equals).build()
}

fn contains(value: &str) -> StringFilter {
    StringFilter::builder().value(value).comparison(StringFilterComparison::Contains).build()
}

/// The finding's IAM user, from its ARN (the last part: a user name has
/// no `/`), or from the resource's details where the ARN is missing; a
/// finding about no IAM user is not one of ours.
fn finding(f: &AwsSecurityFinding) -> Option<Finding> {
    let user = f.resources().iter().find(|r| r.r#type() == Some("AwsIamUser"))?;
    let user_name = user
        .id()
        .filter(|arn| arn.contains(":user/"))
        .and_then(|arn| arn.rsplit('/').next())
        .or_else(|| user.details()?.aws_iam_user()?.user_name())
        .map(str::to_owned)?;
    Some(Finding {
        id: f.id()?.to_owned(),
        product_arn: f.product_arn()?.to_owned(),
        account_id: f.aws_account_id()?.to_owned(),
        user_name,
        compliance_status: f.compliance().and_then(|c| c.status()).map(|s| s.as_str().to_owned()),
        workflow_status: f.workflow().and_then(|w| w.status()).and_then(|s| s.as_str().parse().ok()).unwrap_or(Workflow::New),
        note: f.note().and_then(|n| n.text()).map(str::to_owned),
    })
}

/// rekey's finding as the SDK's, for `BatchImportFindings`.
pub fn to_sdk(f: &rekey_core::asff::AsffFinding) -> AwsSecurityFinding {
    use aws_sdk_securityhub::types::{
        AwsIamAccessKeyDetails, AwsIamAccessKeyStatus, AwsIamUserDetails, Compliance, ComplianceStatus, FindingProviderFields,
        FindingProviderSeverity, Note, Partition, RecordState, Resource, ResourceDetails, Severity, SeverityLabel, Workflow as SdkWorkflow,
    };
    let resources = f.resources.iter().map(|r| {
        let details = ResourceDetails::builder()
            .set_aws_iam_user(r.details.aws_iam_user.as_ref().map(|u| AwsIamUserDetails::builder().user_name(&u.user_name).path(&u.path).build()))
            .set_aws_iam_access_key(r.details.aws_iam_access_key.as_ref().map(|k| {
                AwsIamAccessKeyDetails::builder()
                    .status(AwsIamAccessKeyStatus::from(k.status.as_str()))
                    .created_at(&k.created_at)
                    .principal_name(&k.principal_name)
                    .build()
            }))
            .build();
        Resource::builder().r#type(r.kind).id(&r.id).partition(Partition::from(r.partition.as_str())).region(&r.region).details(details).build()
    });
    AwsSecurityFinding::builder()
        .schema_version(f.schema_version)
        .id(&f.id)
        .product_arn(&f.product_arn)
        .generator_id(f.generator_id)
        .aws_account_id(&f.aws_account_id)
        .set_types(Some(f.types.iter().map(|t| (*t).to_owned()).collect()))
        .created_at(&f.created_at)
        .updated_at(&f.updated_at)
        .severity(Severity::builder().label(SeverityLabel::from(f.severity.label)).build())
        .finding_provider_fields(
            FindingProviderFields::builder()
                .severity(FindingProviderSeverity::builder().label(SeverityLabel::from(f.finding_provider_fields.severity.label)).build())
                .set_types(Some(f.finding_provider_fields.types.iter().map(|t| (*t).to_owned()).collect()))
                .build(),
        )
        .title(f.title)
        .description(&f.description)
        .compliance(Compliance::builder().status(ComplianceStatus::from(f.compliance.status)).build())
        .set_workflow(f.workflow.as_ref().map(|w| SdkWorkflow::builder().status(WorkflowStatus::from(w.status)).build()))
        .set_note(f.note.as_ref().map(|n| Note::builder().text(&n.text).updated_by(n.updated_by).updated_at(&n.updated_at).build()))
        .record_state(RecordState::from(f.record_state))
        .set_resources(Some(resources.collect()))
        .set_product_fields(Some(f.product_fields.clone().into_iter().collect()))
        .build()
}
