//! The client factory: every SDK client is built here, from one resolved
//! [`aws_config::SdkConfig`], so the endpoint override, region fallback,
//! retry policy and call counting apply to all of them alike.

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
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
}

/// IAM is a global service signed in us-east-1; used when nothing else names
/// a region, so a bare `rekey scan` works.
const FALLBACK_REGION: &str = "us-east-1";

/// IAM throttles at undocumented rates: retry more than the SDK's default 3
/// attempts unless the user set `AWS_MAX_ATTEMPTS` or a profile's `max_attempts`.
const DEFAULT_MAX_ATTEMPTS: u32 = 6;

#[derive(Clone)]
pub struct Clients {
    config: aws_config::SdkConfig,
    calls: CallCounter,
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
        if std::env::var_os("AWS_MAX_ATTEMPTS").is_none() {
            loader = loader.retry_config(
                RetryConfig::standard()
                    .with_max_attempts(DEFAULT_MAX_ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(500)),
            );
        }
        Clients { config: loader.load().await, calls: CallCounter::default() }
    }

    pub fn iam(&self) -> aws_sdk_iam::Client {
        let config = aws_sdk_iam::config::Builder::from(&self.config)
            .interceptor(self.calls.clone())
            .build();
        aws_sdk_iam::Client::from_conf(config)
    }

    pub fn sdk_config(&self) -> &aws_config::SdkConfig {
        &self.config
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
}

/// Counts HTTP requests (retries included) by `service:Operation`, so
/// `--verbose` can show what a command cost.
#[derive(Debug, Clone, Default)]
pub struct CallCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl CallCounter {
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().expect("counter lock").clone()
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
            *self.0.lock().expect("counter lock").entry(name).or_default() += 1;
        }
        Ok(())
    }
}
