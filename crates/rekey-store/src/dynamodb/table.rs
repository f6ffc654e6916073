//! The table's shape: its keys, indexes, TTL and backups, for `rekey state
//! init` (which creates it, or checks that an existing one is ours) and for
//! the CloudFormation that `rekey state init --print` prints. Kept apart so
//! that both are built from the same [`INDEXES`] and [`KEY_ATTRIBUTES`]:
//! one place to change the shape.

use super::DynamoStore;
use crate::{Result, StoreError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, PointInTimeRecoverySpecification, Projection, ProjectionType, ScalarAttributeType,
    SseSpecification, TableStatus, TimeToLiveSpecification,
};

pub fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// What `rekey state init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDescription {
    pub created: bool,
    pub arn: String,
}

/// The table: its keys and indexes, for `create_table` and for the
/// CloudFormation that `rekey state init --print` prints.
pub(super) struct Index {
    pub(super) name: &'static str,
    pub(super) hash: &'static str,
    pub(super) range: &'static str,
    /// Attributes besides the keys; `None` projects them all.
    include: Option<&'static [&'static str]>,
}

pub(super) const INDEXES: [Index; 3] = [
    // What `run` needs of a due rotation: its id and account, nothing more.
    Index { name: "queue", hash: "queue", range: "queue_at", include: Some(&["id", "account_id"]) },
    Index { name: "phase", hash: "phase", range: "started_at", include: None },
    Index { name: "audit_by_rotation", hash: "rotation_id", range: "seq", include: None },
];

/// Attribute types of every key: `pk`/`sk` and the indexes'.
const KEY_ATTRIBUTES: [(&str, &str); 8] =
    [("pk", "S"), ("sk", "S"), ("queue", "S"), ("queue_at", "N"), ("phase", "S"), ("started_at", "N"), ("rotation_id", "S"), ("seq", "N")];

pub(super) const TTL_ATTRIBUTE: &str = "expires_at";

impl DynamoStore {
    /// Creates the table with its indexes, point-in-time recovery and TTL,
    /// or checks that an existing one has the right keys and indexes.
    pub async fn create_table(&self) -> Result<TableDescription> {
        let created = match self.describe().await? {
            Some(table) => {
                self.check_shape(&table)?;
                false
            }
            None => {
                let mut create = self.client.create_table().table_name(&self.table).billing_mode(BillingMode::PayPerRequest);
                for (name, kind) in KEY_ATTRIBUTES {
                    let kind = if kind == "S" { ScalarAttributeType::S } else { ScalarAttributeType::N };
                    // invariant: the builder's required fields are all set here
                    create = create.attribute_definitions(AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build().expect("name and type"));
                }
                let schema = |hash: &str, range: &str| {
                    vec![
                        // invariant: the builder's required fields are all set here
                        KeySchemaElement::builder().attribute_name(hash).key_type(KeyType::Hash).build().expect("name and type"),
                        // invariant: the builder's required fields are all set here
                        KeySchemaElement::builder().attribute_name(range).key_type(KeyType::Range).build().expect("name and type"),
                    ]
                };
                create = create.set_key_schema(Some(schema("pk", "sk")));
                for index in &INDEXES {
                    let projection = match index.include {
                        Some(names) => Projection::builder().projection_type(ProjectionType::Include).set_non_key_attributes(Some(names.iter().map(|n| n.to_string()).collect())).build(),
                        None => Projection::builder().projection_type(ProjectionType::All).build(),
                    };
                    let gsi = GlobalSecondaryIndex::builder()
                        .index_name(index.name)
                        .set_key_schema(Some(schema(index.hash, index.range)))
                        .projection(projection)
                        .build()
                        // invariant: the builder's required fields are all set here
                        .expect("name, schema and projection");
                    create = create.global_secondary_indexes(gsi);
                }
                create.sse_specification(SseSpecification::builder().enabled(true).build()).send().await.map_err(|e| self.fail("dynamodb:CreateTable", e))?;
                true
            }
        };
        let arn = self.wait_active().await?;
        // invariant: the builder's required fields are all set here
        let ttl = TimeToLiveSpecification::builder().enabled(true).attribute_name(TTL_ATTRIBUTE).build().expect("enabled and name");
        let ttl_now = self.client.describe_time_to_live().table_name(&self.table).send().await.map_err(|e| self.fail("dynamodb:DescribeTimeToLive", e))?;
        if ttl_now.time_to_live_description.and_then(|d| d.attribute_name).as_deref() != Some(TTL_ATTRIBUTE) {
            self.client.update_time_to_live().table_name(&self.table).time_to_live_specification(ttl).send().await.map_err(|e| self.fail("dynamodb:UpdateTimeToLive", e))?;
        }
        // invariant: the builder's required fields are all set here
        let pitr = PointInTimeRecoverySpecification::builder().point_in_time_recovery_enabled(true).build().expect("enabled");
        self.client
            .update_continuous_backups()
            .table_name(&self.table)
            .point_in_time_recovery_specification(pitr)
            .send()
            .await
            .map_err(|e| self.fail("dynamodb:UpdateContinuousBackups", e))?;
        Ok(TableDescription { created, arn })
    }

    async fn describe(&self) -> Result<Option<aws_sdk_dynamodb::types::TableDescription>> {
        match self.client.describe_table().table_name(&self.table).send().await {
            Ok(out) => Ok(out.table),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(None),
            Err(e) => Err(self.fail("dynamodb:DescribeTable", e)),
        }
    }

    /// An existing table is used only if its keys and indexes are ours.
    fn check_shape(&self, table: &aws_sdk_dynamodb::types::TableDescription) -> Result<()> {
        let keys: Vec<&str> = table.key_schema().iter().map(|k| k.attribute_name()).collect();
        let mut indexes: Vec<&str> = table.global_secondary_indexes().iter().filter_map(|i| i.index_name()).collect();
        indexes.sort_unstable();
        let mut ours: Vec<&str> = INDEXES.iter().map(|i| i.name).collect();
        ours.sort_unstable();
        if keys != ["pk", "sk"] || indexes != ours {
            return Err(StoreError::Refused(format!(
                "the table {} exists but is not a rekey state table (keys {keys:?}, indexes {indexes:?}; expected [\"pk\", \"sk\"] and {ours:?})",
                self.table
            )));
        }
        Ok(())
    }

    /// Waits (bounded) until the table and its indexes are ACTIVE.
    async fn wait_active(&self) -> Result<String> {
        for _ in 0..300 {
            if let Some(t) = self.describe().await? {
                let indexes_active = t.global_secondary_indexes().iter().all(|i| i.index_status().is_none_or(|s| s.as_str() == "ACTIVE"));
                if t.table_status() == Some(&TableStatus::Active) && indexes_active {
                    return Ok(t.table_arn().unwrap_or_default().to_owned());
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        Err(StoreError::Refused(format!("the table {} did not become ACTIVE within 5 minutes", self.table)))
    }

    /// The table as a CloudFormation template (`rekey state init --print`).
    pub fn cloudformation(table: &str) -> serde_json::Value {
        use serde_json::json;
        let schema = |hash: &str, range: &str| json!([{"AttributeName": hash, "KeyType": "HASH"}, {"AttributeName": range, "KeyType": "RANGE"}]);
        let indexes: Vec<_> = INDEXES
            .iter()
            .map(|i| {
                let projection = match i.include {
                    Some(names) => json!({"ProjectionType": "INCLUDE", "NonKeyAttributes": names}),
                    None => json!({"ProjectionType": "ALL"}),
                };
                json!({"IndexName": i.name, "KeySchema": schema(i.hash, i.range), "Projection": projection})
            })
            .collect();
        let attributes: Vec<_> = KEY_ATTRIBUTES.iter().map(|(name, kind)| json!({"AttributeName": name, "AttributeType": kind})).collect();
        json!({
            "AWSTemplateFormatVersion": "2010-09-09",
            "Description": "rekey state table: rotations, leases and the audit log (rekey state init --print)",
            "Resources": {
                "RekeyStateTable": {
                    "Type": "AWS::DynamoDB::Table",
                    "DeletionPolicy": "Retain",
                    "UpdateReplacePolicy": "Retain",
                    "Properties": {
                        "TableName": table,
                        "BillingMode": "PAY_PER_REQUEST",
                        "AttributeDefinitions": attributes,
                        "KeySchema": schema("pk", "sk"),
                        "GlobalSecondaryIndexes": indexes,
                        "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": true},
                        "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": true},
                        "SSESpecification": {"SSEEnabled": true}
                    }
                }
            },
            "Outputs": {"TableArn": {"Value": {"Fn::GetAtt": ["RekeyStateTable", "Arn"]}}}
        })
    }
}
