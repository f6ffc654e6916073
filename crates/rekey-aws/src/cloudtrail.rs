//! CloudTrail event history (`LookupEvents`): the management events of
//! access keys, within CloudTrail's 90 days, at most 2 requests a second per
//! account and region as CloudTrail allows.

use crate::error::{classify, AwsError};
use crate::Clients;
use futures::future::join_all;
use aws_sdk_cloudtrail::primitives::DateTime;
use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use jiff::Timestamp;
use rekey_core::consumers::TrailEvent;
use rekey_core::role_plan::PlanEvent;
use crate::pace::{Pacer, CLOUDTRAIL_LOOKUP};
use std::sync::Arc;

/// CloudTrail's page size limit.
const PAGE: i32 = 50;

/// CloudTrail in one region of one account, with its request budget.
pub struct Trail {
    client: aws_sdk_cloudtrail::Client,
    endpoint: String,
    pub region: String,
    /// CloudTrail's quota in this account and region, shared by every
    /// reader in the process (`consumers`, `scan --consumers`, drains).
    limit: Arc<Pacer>,
    /// The account's `UpdateAccessKey` events in this region as last read,
    /// shared with every other rotation of the process.
    updates: Arc<tokio::sync::Mutex<Option<RecentUpdates>>>,
}

/// CloudTrail's event history holds 90 days.
pub const HISTORY: jiff::SignedDuration = jiff::SignedDuration::from_hours(90 * 24);

/// CloudTrail in several regions of one account, read at once (each
/// region has its own budget).
pub struct Trails(Vec<Trail>);

impl Trails {
    pub fn new(clients: &Clients, regions: &[String]) -> Trails {
        Trails(regions.iter().map(|r| Trail::new(clients, r)).collect())
    }

    /// The events of `keys` from `from` (at most 90 days back) until now,
    /// from every region.
    pub async fn events(&self, keys: &[String], from: Timestamp) -> Result<KeyEvents, AwsError> {
        let now = Timestamp::now();
        let from = from.max(now - HISTORY);
        let mut all = KeyEvents::default();
        for key in keys {
            for found in join_all(self.0.iter().map(|t| t.key_events(key, from, now))).await {
                let found = found?;
                all.unreadable += found.unreadable;
                all.events.extend(found.events);
            }
        }
        Ok(all)
    }
}

impl Trails {
    /// The events of `keys` from `from` (at most 90 days back) until now,
    /// from every region, as `role-plan` reads them: with the resources
    /// they name, and an event whose record cannot be read as one of an
    /// unknown consumer.
    pub async fn plan_events(&self, keys: &[String], from: Timestamp) -> Result<Vec<PlanEvent>, AwsError> {
        let now = Timestamp::now();
        let from = from.max(now - HISTORY);
        let mut all = Vec::new();
        for key in keys {
            for found in join_all(self.0.iter().map(|t| t.key_plan_events(key, from, now))).await {
                all.extend(found?);
            }
        }
        Ok(all)
    }

    /// When `UpdateAccessKey` set `access_key_id` active, from `from` until
    /// now, in every region read (IAM's events are in us-east-1 in the
    /// `aws` partition). An event that cannot be read counts as one: the
    /// question is whether anyone may have re-enabled the key.
    pub async fn activations(&self, access_key_id: &str, from: Timestamp) -> Result<Vec<Timestamp>, AwsError> {
        let now = Timestamp::now();
        let from = from.max(now - HISTORY);
        let mut all = Vec::new();
        for found in join_all(self.0.iter().map(|t| t.activations(access_key_id, from, now))).await {
            all.extend(found?);
        }
        Ok(all)
    }
}

/// The events of one key, and how many could not be read.
#[derive(Debug, Default)]
pub struct KeyEvents {
    pub events: Vec<TrailEvent>,
    pub unreadable: usize,
}

impl Trail {
    pub fn new(clients: &Clients, region: &str) -> Trail {
        // The token bucket below paces every LookupEvents, retries included:
        // the SDK's own retries would spend CloudTrail's budget behind it.
        let retry = aws_config::retry::RetryConfig::disabled();
        let config = aws_sdk_cloudtrail::config::Builder::from(clients.sdk_config())
            .region(aws_config::Region::new(region.to_owned()))
            .retry_config(retry);
        let config = crate::client::common_layers!(config, clients).build();
        Trail {
            client: aws_sdk_cloudtrail::Client::from_conf(config),
            endpoint: clients.endpoint(),
            region: region.to_owned(),
            limit: clients.pacer("cloudtrail:LookupEvents", region, CLOUDTRAIL_LOOKUP),
            updates: clients.recent_updates(region),
        }
    }

    /// Every management event of `access_key_id` between `from` and `to`,
    /// every page, each page within CloudTrail's rate.
    pub async fn key_events(&self, access_key_id: &str, from: Timestamp, to: Timestamp) -> Result<KeyEvents, AwsError> {
        let attribute = key_attribute(access_key_id)?;
        let mut out = KeyEvents::default();
        for e in self.all_pages(&attribute, from, to).await? {
            match e.cloud_trail_event().and_then(|doc| parse(doc, &self.region)) {
                Some(event) => out.events.push(event),
                None => out.unreadable += 1,
            }
        }
        Ok(out)
    }

    /// [`Trail::key_events`] as `role-plan` reads them ([`plan_event`]).
    pub async fn key_plan_events(&self, access_key_id: &str, from: Timestamp, to: Timestamp) -> Result<Vec<PlanEvent>, AwsError> {
        let attribute = key_attribute(access_key_id)?;
        Ok(self.all_pages(&attribute, from, to).await?.iter().map(|e| plan_event(e, &self.region, from)).collect())
    }

    /// When `UpdateAccessKey` set `access_key_id` active between `from`
    /// and `to` (an unreadable event at its own time, or `from`).
    ///
    /// The events are the account's, not the key's (CloudTrail looks them
    /// up by event name): one read serves every rotation that asks within
    /// [`UPDATES_REUSED_FOR`] for a window it covers, so a pass that
    /// deletes a hundred old keys does not spend CloudTrail's 2 lookups a
    /// second a hundred times over. The callers wait for one another's read.
    pub async fn activations(&self, access_key_id: &str, from: Timestamp, to: Timestamp) -> Result<Vec<Timestamp>, AwsError> {
        let mut recent = self.updates.lock().await;
        let reusable = recent.as_ref().is_some_and(|r| r.from <= from && to.duration_since(r.read_at) <= UPDATES_REUSED_FOR);
        if !reusable {
            let attribute = LookupAttribute::builder()
                .attribute_key(LookupAttributeKey::EventName)
                .attribute_value("UpdateAccessKey")
                .build()
                .map_err(|e| AwsError::Unexpected { operation: "cloudtrail:LookupEvents", detail: e.to_string() })?;
            let events = self
                .all_pages(&attribute, from, to)
                .await?
                .iter()
                .map(|e| (e.event_time().and_then(|t| Timestamp::from_second(t.secs()).ok()), e.cloud_trail_event().and_then(parse_update)))
                .collect();
            *recent = Some(RecentUpdates { from, read_at: to, events });
        }
        // invariant: set just above when it was not reusable
        Ok(recent.as_ref().expect("read").activations(access_key_id, from))
    }

    /// Every event matching `attribute` between `from` and `to`, every page.
    async fn all_pages(&self, attribute: &LookupAttribute, from: Timestamp, to: Timestamp) -> Result<Vec<aws_sdk_cloudtrail::types::Event>, AwsError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self.page(attribute, from, to, token).await?;
            out.extend(page.events().iter().cloned());
            token = page.next_token().filter(|t| !t.is_empty()).map(str::to_owned);
            if token.is_none() {
                return Ok(out);
            }
        }
    }
}

impl Trail {
    /// One page, within the rate; throttling (another client sharing the
    /// account's budget) is retried through the same bucket.
    async fn page(
        &self,
        attribute: &LookupAttribute,
        from: Timestamp,
        to: Timestamp,
        token: Option<String>,
    ) -> Result<aws_sdk_cloudtrail::operation::lookup_events::LookupEventsOutput, AwsError> {
        let mut attempt = 1;
        loop {
            self.limit.ready().await;
            let sent = self
                .client
                .lookup_events()
                .lookup_attributes(attribute.clone())
                .start_time(DateTime::from_secs(from.as_second()))
                .end_time(DateTime::from_secs(to.as_second()))
                .max_results(PAGE)
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| classify("cloudtrail:LookupEvents", &self.endpoint, e));
            match sent {
                Err(AwsError::Throttled { .. }) if attempt < ATTEMPTS => attempt += 1,
                other => return other,
            }
        }
    }
}

/// Attempts at one page when CloudTrail throttles.
const ATTEMPTS: u32 = 6;

/// The parts of a CloudTrail event document rekey reads; `None` when one
/// is missing or malformed.
fn parse(doc: &str, region: &str) -> Option<TrailEvent> {
    let v: serde_json::Value = serde_json::from_str(doc).ok()?;
    let text = |field: &str| v.get(field).and_then(|f| f.as_str()).map(str::to_owned);
    Some(TrailEvent {
        access_key_id: v.get("userIdentity")?.get("accessKeyId")?.as_str()?.to_owned(),
        time: text("eventTime")?.parse().ok()?,
        event_name: text("eventName")?,
        service: TrailEvent::service_of(&text("eventSource")?),
        region: text("awsRegion").unwrap_or_else(|| region.to_owned()),
        source_ip: text("sourceIPAddress").unwrap_or_default(),
        user_agent: text("userAgent").unwrap_or_default(),
    })
}

/// The lookup of one access key's events.
fn key_attribute(access_key_id: &str) -> Result<LookupAttribute, AwsError> {
    LookupAttribute::builder()
        .attribute_key(LookupAttributeKey::AccessKeyId)
        .attribute_value(access_key_id)
        .build()
        .map_err(|e| AwsError::Unexpected { operation: "cloudtrail:LookupEvents", detail: e.to_string() })
}

/// An event as a role plan reads it. Its resources are the ARNs its record
/// names (`resources[].ARN`) and those `LookupEvents` lists beside it
/// (`Resources`: a name that is an ARN, or a bucket's name). A record that
/// cannot be read (as [`parse`] reads it) gives an unreadable event with
/// what `LookupEvents` tells of it: time (else `from`), source, name and
/// resources.
fn plan_event(e: &aws_sdk_cloudtrail::types::Event, region: &str, from: Timestamp) -> PlanEvent {
    let partition = rekey_core::model::partition_of(region);
    let mut resources: Vec<String> = Vec::new();
    let mut add = |arn: String| {
        if !resources.contains(&arn) {
            resources.push(arn);
        }
    };
    let record = e.cloud_trail_event().and_then(|doc| Some((parse(doc, region)?, serde_json::from_str::<serde_json::Value>(doc).ok()?)));
    if let Some((_, v)) = &record {
        for r in v.get("resources").and_then(|r| r.as_array()).into_iter().flatten() {
            if let Some(arn) = r.get("ARN").and_then(|a| a.as_str()).filter(|a| a.starts_with("arn:")) {
                add(arn.to_owned());
            }
        }
    }
    for r in e.resources() {
        if let Some(arn) = resource_arn(r.resource_type(), r.resource_name(), partition) {
            add(arn);
        }
    }
    match record {
        Some((trail, v)) => {
            let text = |field: &str| v.get(field).and_then(|f| f.as_str()).filter(|f| !f.is_empty()).map(str::to_owned);
            PlanEvent { error_code: text("errorCode"), vpc_endpoint_id: text("vpcEndpointId"), ..PlanEvent::from_trail(&trail, resources) }
        }
        None => PlanEvent {
            time: e.event_time().and_then(|t| Timestamp::from_second(t.secs()).ok()).unwrap_or(from),
            event_source: e.event_source().unwrap_or_default().to_owned(),
            event_name: e.event_name().unwrap_or_default().to_owned(),
            region: region.to_owned(),
            source_ip: String::new(),
            user_agent: String::new(),
            resources,
            error_code: None,
            vpc_endpoint_id: None,
            readable: false,
        },
    }
}

/// The ARN of a resource `LookupEvents` lists: its name when that is an
/// ARN; a bucket's from its name (bucket ARNs name neither region nor
/// account); else none.
fn resource_arn(kind: Option<&str>, name: Option<&str>, partition: &str) -> Option<String> {
    let name = name.filter(|n| !n.is_empty())?;
    if name.starts_with("arn:") {
        return Some(name.to_owned());
    }
    (kind == Some("AWS::S3::Bucket") && !name.contains(['/', ':'])).then(|| format!("arn:{partition}:s3:::{name}"))
}

/// How long one read of the account's `UpdateAccessKey` events answers
/// for: CloudTrail delivers an event minutes after the call, so a read
/// seconds old sees what a new one would.
pub const UPDATES_REUSED_FOR: jiff::SignedDuration = jiff::SignedDuration::from_secs(5);

/// The `UpdateAccessKey` events of one account and region from `from`,
/// read at `read_at`, with their times where CloudTrail gave one; `None`
/// for an event that cannot be read.
#[derive(Debug)]
pub struct RecentUpdates {
    from: Timestamp,
    read_at: Timestamp,
    events: Vec<(Option<Timestamp>, Option<Update>)>,
}

impl RecentUpdates {
    /// When `key` was set active from `from` on. An event that cannot be
    /// read counts (anyone may have re-enabled the key), and one without a
    /// time may be in anyone's window: at `from`.
    fn activations(&self, key: &str, from: Timestamp) -> Vec<Timestamp> {
        self.events
            .iter()
            .filter(|(at, _)| at.is_none_or(|at| at >= from))
            .filter(|(_, update)| match update {
                Some(u) => u.key == key && u.status == "Active" && !u.failed,
                None => true,
            })
            .map(|(at, _)| at.unwrap_or(from))
            .collect()
    }
}

/// What an `UpdateAccessKey` event asked for.
#[derive(Debug, PartialEq)]
struct Update {
    key: String,
    status: String,
    /// AWS refused it (the event has an `errorCode`).
    failed: bool,
}

/// `None` when the key or the status is missing, or the document is malformed.
fn parse_update(doc: &str) -> Option<Update> {
    let v: serde_json::Value = serde_json::from_str(doc).ok()?;
    let params = v.get("requestParameters")?;
    let text = |field: &str| params.get(field).and_then(|f| f.as_str()).map(str::to_owned);
    Some(Update { key: text("accessKeyId")?, status: text("status")?, failed: v.get("errorCode").is_some_and(|c| !c.is_null()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_read_answers_for_each_key_and_window() {
        let t = |s: &str| -> Timestamp { s.parse().unwrap() };
        let update = |key: &str, status: &str, failed: bool| Some(Update { key: key.into(), status: status.into(), failed });
        let read = RecentUpdates {
            from: t("2026-11-01T00:00:00Z"),
            read_at: t("2026-11-28T00:00:00Z"),
            events: vec![
                (Some(t("2026-11-10T00:00:00Z")), update("AKIA1", "Active", false)),
                (Some(t("2026-11-20T00:00:00Z")), update("AKIA1", "Inactive", false)),
                (Some(t("2026-11-21T00:00:00Z")), update("AKIA1", "Active", true)),
                (Some(t("2026-11-22T00:00:00Z")), update("AKIA2", "Active", false)),
                (Some(t("2026-11-05T00:00:00Z")), None),
                (None, None),
            ],
        };
        // AKIA1 since the 1st: its activation, the unreadable event, and the one without a time (at the window's start).
        assert_eq!(read.activations("AKIA1", t("2026-11-01T00:00:00Z")), [t("2026-11-10T00:00:00Z"), t("2026-11-05T00:00:00Z"), t("2026-11-01T00:00:00Z")]);
        // A later window, from the same read: the timeless event still counts; a refused call never does.
        assert_eq!(read.activations("AKIA1", t("2026-11-15T00:00:00Z")), [t("2026-11-15T00:00:00Z")]);
        assert_eq!(read.activations("AKIA2", t("2026-11-15T00:00:00Z")), [t("2026-11-22T00:00:00Z"), t("2026-11-15T00:00:00Z")]);
    }

    #[test]
    fn an_event_document_is_read_or_refused() {
        let doc = r#"{"eventTime": "2026-11-28T09:00:00Z", "eventSource": "s3.amazonaws.com", "eventName": "ListBuckets",
            "awsRegion": "eu-west-1", "sourceIPAddress": "10.0.1.5", "userAgent": "aws-cli/2.15.0",
            "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIA1"}}"#;
        let e = parse(doc, "us-east-1").unwrap();
        assert_eq!((e.service.as_str(), e.region.as_str(), e.access_key_id.as_str()), ("s3", "eu-west-1", "AKIA1"));
        assert!(parse("{}", "us-east-1").is_none());
        assert!(parse("not json", "us-east-1").is_none());
    }

    #[test]
    fn a_plan_event_takes_its_resources_error_and_endpoint() {
        use aws_sdk_cloudtrail::types::{Event, Resource};
        let doc = r#"{"eventTime": "2026-11-28T09:00:00Z", "eventSource": "s3.amazonaws.com", "eventName": "GetBucketPolicy",
            "awsRegion": "eu-west-1", "sourceIPAddress": "10.0.1.5", "userAgent": "aws-cli/2.15.0", "errorCode": "AccessDenied",
            "vpcEndpointId": "vpce-0abc", "resources": [{"ARN": "arn:aws:s3:::reports", "accountId": "1", "type": "AWS::S3::Bucket"}],
            "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIA1"}}"#;
        let resource = |kind: &str, name: &str| Resource::builder().resource_type(kind).resource_name(name).build();
        let event = Event::builder()
            .cloud_trail_event(doc)
            .resources(resource("AWS::S3::Bucket", "reports"))
            .resources(resource("AWS::KMS::Key", "arn:aws:kms:eu-west-1:1:key/k"))
            .resources(resource("AWS::DynamoDB::Table", "orders"))
            .build();
        let from: Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
        let e = plan_event(&event, "eu-west-1", from);
        assert!(e.readable);
        assert_eq!(e.resources, ["arn:aws:s3:::reports", "arn:aws:kms:eu-west-1:1:key/k"], "a table's name alone is no ARN");
        assert_eq!((e.error_code.as_deref(), e.vpc_endpoint_id.as_deref()), (Some("AccessDenied"), Some("vpce-0abc")));
        assert_eq!((e.event_source.as_str(), e.source_ip.as_str()), ("s3.amazonaws.com", "10.0.1.5"));

        let unread = Event::builder().cloud_trail_event("{").event_source("kms.amazonaws.com").event_name("Decrypt").resources(resource("AWS::KMS::Key", "arn:aws:kms:eu-west-1:1:key/k")).build();
        let u = plan_event(&unread, "cn-north-1", from);
        assert!(!u.readable);
        assert_eq!((u.time, u.event_name.as_str(), u.source_ip.as_str()), (from, "Decrypt", ""));
        assert_eq!(u.resources, ["arn:aws:kms:eu-west-1:1:key/k"]);
        assert_eq!(resource_arn(Some("AWS::S3::Bucket"), Some("b"), "aws-cn").as_deref(), Some("arn:aws-cn:s3:::b"));
    }

    #[test]
    fn an_update_event_names_its_key_and_status() {
        let doc = r#"{"eventName": "UpdateAccessKey", "requestParameters": {"userName": "app", "accessKeyId": "AKIA1", "status": "Active"}}"#;
        assert_eq!(parse_update(doc), Some(Update { key: "AKIA1".into(), status: "Active".into(), failed: false }));
        let refused = r#"{"errorCode": "AccessDenied", "requestParameters": {"accessKeyId": "AKIA1", "status": "Active"}}"#;
        assert!(parse_update(refused).unwrap().failed);
        assert_eq!(parse_update(r#"{"requestParameters": {"accessKeyId": "AKIA1"}}"#), None);
        assert_eq!(parse_update("not json"), None);
    }
}
