//! The client factory: every SDK client is built here, from one resolved
//! [`aws_config::SdkConfig`], so the endpoint override, region fallback,
//! retry policy and call counting apply to all of them alike.

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::classifiers::{ClassifyRetry, RetryAction, RetryClassifierPriority};
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_credential_types::provider::SharedCredentialsProvider;
use crate::error::{classify, AwsError};
use crate::cloudtrail::RecentUpdates;
use crate::pace::{Pacer, Pacers, Quota};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where and as whom to call AWS. `None` leaves the choice to the SDK's
/// standard chain (environment, shared config files, SSO, IMDS).
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    pub profile: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// How long one attempt of a request may take; `None` is
    /// [`DEFAULT_REQUEST_TIMEOUT`].
    pub request_timeout: Option<Duration>,
}

/// The SDK sets no read timeout: an endpoint that accepts a request and
/// never answers would hold a rotation (and its lease) forever. An attempt
/// that takes longer is abandoned and retried like a throttled one; IAM
/// answers in well under a second.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// IAM is a global service signed in us-east-1; used when nothing else names
/// a region, so a bare `rekey scan` works.
const FALLBACK_REGION: &str = "us-east-1";

/// IAM throttles at undocumented rates: retry more than the SDK's default 3
/// attempts unless the user set `AWS_MAX_ATTEMPTS` or a profile's `max_attempts`.
const DEFAULT_MAX_ATTEMPTS: u32 = 6;

/// A role in another account, for [`Clients::assume`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleToAssume {
    pub arn: String,
    pub session_name: String,
    pub external_id: Option<String>,
}

#[derive(Clone)]
pub struct Clients {
    config: aws_config::SdkConfig,
    calls: CallCounter,
    clock: AwsClock,
    /// The quotas of this account's calls, shared by every clone.
    pacers: Pacers,
    /// The account's `UpdateAccessKey` events by region, as last read.
    updates: Arc<Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<Option<RecentUpdates>>>>>>,
}

impl Clients {
    pub async fn new(settings: &AwsSettings) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let region = aws_config::meta::region::RegionProviderChain::first_try(
            settings.region.clone().map(aws_config::Region::new),
        )
        .or_default_provider()
        .or_else(FALLBACK_REGION);
        loader = loader.region(region);
        loader = loader.timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(settings.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT))
                .build(),
        );
        if std::env::var_os("AWS_MAX_ATTEMPTS").is_none() {
            // Adaptive: an account that throttles slows rekey's requests to
            // it (a client-side rate limit) instead of failing them.
            loader = loader.retry_config(
                RetryConfig::adaptive()
                    .with_max_attempts(DEFAULT_MAX_ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(500)),
            );
        }
        Clients { config: loader.load().await, calls: CallCounter::default(), clock: AwsClock::default(), pacers: Pacers::default(), updates: Arc::default() }
    }

    pub fn iam(&self) -> aws_sdk_iam::Client {
        let config = common_layers!(aws_sdk_iam::config::Builder::from(&self.config), self).interceptor(self.clock.clone()).build();
        aws_sdk_iam::Client::from_conf(config)
    }

    /// DynamoDB, for the state store.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        let config = common_layers!(aws_sdk_dynamodb::config::Builder::from(&self.config), self).interceptor(self.clock.clone()).build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// STS with `config`'s credentials (the caller's, or a key under test).
    pub fn sts(&self, credentials: Option<aws_credential_types::Credentials>) -> aws_sdk_sts::Client {
        let mut config = common_layers!(aws_sdk_sts::config::Builder::from(&self.config), self).interceptor(self.clock.clone());
        if let Some(credentials) = credentials {
            config = config.credentials_provider(credentials);
        }
        aws_sdk_sts::Client::from_conf(config.build())
    }

    /// The same clients acting in another account: `AssumeRole` into `role`
    /// with the caller's credentials, once (an hour's credentials). Calls
    /// are counted with this process's others.
    pub async fn assume(&self, role: &RoleToAssume) -> Result<Clients, AwsError> {
        let out = self
            .sts(None)
            .assume_role()
            .role_arn(&role.arn)
            .role_session_name(&role.session_name)
            .set_external_id(role.external_id.clone())
            .duration_seconds(3600)
            .send()
            .await
            .map_err(|e| classify("sts:AssumeRole", &self.endpoint(), e))?;
        let c = out.credentials.ok_or(AwsError::Unexpected { operation: "sts:AssumeRole", detail: "no credentials in the answer".into() })?;
        let expiry = std::time::SystemTime::try_from(c.expiration).ok();
        let credentials = aws_credential_types::Credentials::new(c.access_key_id, c.secret_access_key, Some(c.session_token), expiry, "rekey-assumed-role");
        let config = self.config.to_builder().credentials_provider(SharedCredentialsProvider::new(credentials)).build();
        // Another account: quotas of its own.
        Ok(Clients { config, calls: self.calls.clone(), clock: self.clock.clone(), pacers: Pacers::default(), updates: Arc::default() })
    }

    /// AWS's clock as its answers tell it.
    pub fn clock(&self) -> &AwsClock {
        &self.clock
    }

    pub fn sdk_config(&self) -> &aws_config::SdkConfig {
        &self.config
    }

    /// The region clients sign for.
    pub fn region(&self) -> String {
        self.config.region().map_or(FALLBACK_REGION, |r| r.as_ref()).to_owned()
    }

    /// The endpoint requests go to, for error messages.
    pub fn endpoint(&self) -> String {
        self.config
            .endpoint_url()
            .map(str::to_owned)
            .unwrap_or_else(|| "the AWS endpoint".to_owned())
    }

    pub fn calls(&self) -> &CallCounter {
        &self.calls
    }

    /// The bucket that keeps `operation` in `region` within `quota`, for
    /// this account.
    pub fn pacer(&self, operation: &'static str, region: &str, quota: Quota) -> Arc<Pacer> {
        self.pacers.of(operation, region, quota)
    }

    /// This account's last read of `UpdateAccessKey` events in `region`
    /// (see [`crate::cloudtrail::Trail::activations`]).
    pub fn recent_updates(&self, region: &str) -> Arc<tokio::sync::Mutex<Option<RecentUpdates>>> {
        // invariant: no code panics while holding the lock
        self.updates.lock().expect("updates lock").entry(region.to_owned()).or_default().clone()
    }
}

/// A refused connection means nothing listens at the endpoint (a wrong
/// `--endpoint-url`, an emulator that is not running): retrying with backoff
/// only delays the error by seconds. Timeouts, resets and throttling keep
/// the SDK's retries. Runs after the SDK's own classifiers to override them.
#[derive(Debug, Clone, Copy)]
pub struct RefusedIsFinal;

impl ClassifyRetry for RefusedIsFinal {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(err)) = ctx.output_or_error() else { return RetryAction::NoActionIndicated };
        let Some(connector) = err.as_connector_error() else { return RetryAction::NoActionIndicated };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(connector);
        while let Some(e) = cause {
            if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused) {
                return RetryAction::RetryForbidden;
            }
            cause = e.source();
        }
        RetryAction::NoActionIndicated
    }

    fn name(&self) -> &'static str {
        "rekey::RefusedIsFinal"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// The SDK's XML reader takes an answer cut short (a proxy, or a
/// connection that dropped mid-answer under a matching `Content-Length`)
/// for a whole one: half a `ListUsers` page read as fewer users. Its JSON
/// readers fail on one, but say only "Unknown: no message". A successful
/// answer must be a whole document. An error answer is left to the SDK,
/// which reports its status: a proxy's HTML page with a 500 is a server
/// error, not an answer cut short.
#[derive(Debug, Clone, Copy)]
pub struct WholeAnswer;

impl Intercept for WholeAnswer {
    fn name(&self) -> &'static str {
        "rekey::WholeAnswer"
    }

    fn read_after_deserialization(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let response = context.response();
        match response.body().bytes() {
            Some(body) if response.status().is_success() && !is_whole(body) => Err("the answer was cut short (its document does not end)".into()),
            _ => Ok(()),
        }
    }
}

/// Whether a body is empty, a whole JSON document, or an XML document that
/// closes the element it starts with.
fn is_whole(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let mut rest = text.trim_start();
    if rest.is_empty() {
        return true;
    }
    if rest.starts_with(['{', '[']) {
        return serde_json::from_str::<serde::de::IgnoredAny>(rest).is_ok();
    }
    // Skip the declaration, comments and processing instructions.
    while let Some(after) = rest.strip_prefix("<?").or_else(|| rest.strip_prefix("<!")) {
        match after.find('>') {
            Some(end) => rest = after[end + 1..].trim_start(),
            None => return false,
        }
    }
    let Some(open) = rest.strip_prefix('<') else { return false };
    let name: String = open.chars().take_while(|c| !c.is_whitespace() && *c != '>' && *c != '/').collect();
    let trimmed = text.trim_end();
    !name.is_empty() && (trimmed.ends_with(&format!("</{name}>")) || (open[name.len()..].trim_start().starts_with("/>") && trimmed.ends_with("/>")))
}

/// What every client gets, whatever its service: a refused connection is
/// final, a cut-short answer is an error, and its requests are counted.
macro_rules! common_layers {
    ($builder:expr, $clients:expr) => {
        $builder
            .retry_classifier($crate::client::RefusedIsFinal)
            .interceptor($crate::client::WholeAnswer)
            .interceptor($clients.calls().clone())
    };
}
pub(crate) use common_layers;

/// Counts HTTP requests (retries included) by `service:Operation`, and
/// retries alone, so `--verbose` can show what a command cost.
#[derive(Debug, Clone, Default)]
pub struct CallCounter(Arc<Mutex<Counts>>);

#[derive(Debug, Default)]
struct Counts {
    requests: BTreeMap<String, u64>,
    retries: BTreeMap<String, u64>,
}

impl CallCounter {
    /// Requests by operation, retries included.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        // invariant: a poisoned lock means a thread already panicked
        self.0.lock().expect("counter lock").requests.clone()
    }

    /// Retried requests by operation (throttling, timeouts, 5xx).
    pub fn retries(&self) -> BTreeMap<String, u64> {
        // invariant: a poisoned lock means a thread already panicked
        self.0.lock().expect("counter lock").retries.clone()
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "rekey::CallCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            let name = format!("{}:{}", meta.service().to_lowercase(), meta.name());
            let retry = cfg.load::<RequestAttempts>().is_some_and(|a| a.attempts() > 1);
            // invariant: a poisoned lock means a thread already panicked
            let mut counts = self.0.lock().expect("counter lock");
            if retry {
                *counts.retries.entry(name.clone()).or_default() += 1;
            }
            *counts.requests.entry(name).or_default() += 1;
        }
        Ok(())
    }
}

/// How far AWS's clock is ahead of ours, from the `Date` header of its last
/// answer (whole seconds). Times compared with AWS's own timestamps (a key's
/// last use) are taken on AWS's clock.
#[derive(Debug, Clone, Default)]
pub struct AwsClock(Arc<Mutex<Option<jiff::SignedDuration>>>);

/// How precisely a `Date` header tells AWS's time.
const PRECISION: jiff::SignedDuration = jiff::SignedDuration::from_secs(2);

impl AwsClock {
    /// Zero until AWS has answered once.
    pub fn offset(&self) -> jiff::SignedDuration {
        // invariant: a poisoned lock means a thread already panicked
        self.0.lock().expect("clock lock").unwrap_or_default()
    }

    fn observe(&self, date: &str) {
        if let Ok(server) = jiff::fmt::rfc2822::parse(date) {
            let local = jiff::Timestamp::now();
            let offset = server.timestamp().duration_since(local);
            // The header has whole seconds and the answer took time to
            // arrive: within that precision the clocks agree.
            let offset = if offset.abs() <= PRECISION { jiff::SignedDuration::ZERO } else { offset.round(jiff::Unit::Second).unwrap_or_default() };
            // invariant: a poisoned lock means a thread already panicked
            *self.0.lock().expect("clock lock") = Some(offset);
        }
    }
}

impl Intercept for AwsClock {
    fn name(&self) -> &'static str {
        "rekey::AwsClock"
    }

    fn read_after_transmit(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(date) = context.response().headers().get("date") {
            self.observe(date);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_is_not_retried_but_a_reset_is() {
        use aws_smithy_runtime_api::client::interceptors::context::{Error, Input};
        use aws_smithy_runtime_api::client::orchestrator::OrchestratorError;
        use aws_smithy_runtime_api::client::result::ConnectorError;
        let verdict = |kind: std::io::ErrorKind| {
            let mut ctx = InterceptorContext::new(Input::erase(()));
            let io = ConnectorError::io(Box::new(std::io::Error::from(kind)));
            ctx.set_output_or_error(Err(OrchestratorError::<Error>::connector(io)));
            RefusedIsFinal.classify_retry(&ctx)
        };
        assert_eq!(verdict(std::io::ErrorKind::ConnectionRefused), RetryAction::RetryForbidden);
        assert_eq!(verdict(std::io::ErrorKind::ConnectionReset), RetryAction::NoActionIndicated);
    }

    #[test]
    fn an_answer_must_be_a_whole_document() {
        let whole = "<?xml version=\"1.0\"?>\n<ListUsersResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><ListUsersResult><Users><member><UserName>a</UserName></member></Users></ListUsersResult></ListUsersResponse>\n";
        assert!(is_whole(whole.as_bytes()));
        assert!(is_whole(b"<Empty/>"));
        for cut in [whole.len() / 2, whole.len() - 3, 10] {
            assert!(!is_whole(&whole.as_bytes()[..cut]), "cut at {cut}");
        }
        assert!(!is_whole(b"<A><B></B>"), "another element's end is not the root's");
        let json = r#"{"Item": {"pk": {"S": "rotation#1"}, "stage": {"S": "draining"}}}"#;
        assert!(is_whole(json.as_bytes()) && is_whole(b"{}") && is_whole(b"") && is_whole(b" \n"));
        for cut in [json.len() / 2, json.len() - 1, 1] {
            assert!(!is_whole(&json.as_bytes()[..cut]), "cut at {cut}");
        }
    }

    #[test]
    fn the_offset_comes_from_the_date_header() {
        let clock = AwsClock::default();
        assert_eq!(clock.offset(), jiff::SignedDuration::ZERO);
        let ahead = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
        clock.observe(&ahead.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string());
        let offset = clock.offset().as_secs();
        assert!((3598..=3600).contains(&offset), "{offset}");
        clock.observe(&jiff::Timestamp::now().strftime("%a, %d %b %Y %H:%M:%S GMT").to_string());
        assert_eq!(clock.offset(), jiff::SignedDuration::ZERO, "a second off is the header's precision, not a skew");
        clock.observe(&ahead.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string());
        clock.observe("not a date");
        assert_eq!(clock.offset().as_secs(), offset, "an unreadable header changes nothing");
    }
}
