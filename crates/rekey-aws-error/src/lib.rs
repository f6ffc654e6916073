//! [`AwsError`]: what went wrong talking to AWS, phrased for the person who
//! has to fix it. [`classify`] is the only place that inspects SDK errors.

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// `detail` is what the last source tried said, when it said more than "nothing here".
    #[error("no AWS credentials found{}; rekey looks for them as the AWS CLI does: in the environment (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), in a profile (--profile or AWS_PROFILE, from ~/.aws/credentials and ~/.aws/config, SSO included: run `aws sso login`), then web identity, container and EC2 instance role credentials", detail.as_ref().map(|d| format!(" (the last source tried said: {d})")).unwrap_or_default())]
    NoCredentials { detail: Option<String> },

    #[error("cannot reach {endpoint} for {operation}: {detail}; check --endpoint-url, AWS_ENDPOINT_URL and the network")]
    Unreachable { operation: &'static str, endpoint: String, detail: String },

    #[error("the credentials were rejected for {operation} ({code}: {message}); refresh them or pick another profile")]
    BadCredentials { operation: &'static str, code: String, message: String },

    #[error("access denied for {operation}: {message}; grant the permissions printed by `rekey policy`")]
    AccessDenied { operation: &'static str, message: String },

    #[error("{operation} was throttled by AWS and still failed after retries ({message}); try again later, or raise AWS_MAX_ATTEMPTS")]
    Throttled { operation: &'static str, message: String },

    /// Security Hub answers `InvalidAccessException` in an account (or
    /// region) that has not enabled it.
    #[error("Security Hub is not enabled in this account and region ({operation}: {message}); enable it there, point securityhub.region in rekey.toml at the region that has it, or set securityhub.enabled = false to keep exemptions in rekey only")]
    HubNotEnabled { operation: &'static str, message: String },

    #[error("{operation}: {message}")]
    NotFound { operation: &'static str, message: String },

    #[error("there is no IAM user named \"{0}\" in this account")]
    NoSuchUser(rekey_core::UserName),

    #[error("{operation} failed: {code}: {message}{}", request_id.as_ref().map(|id| format!(" (request id {id})")).unwrap_or_default())]
    Service { operation: &'static str, code: String, message: String, request_id: Option<String> },

    #[error("{operation} returned something rekey cannot read: {detail}")]
    Unexpected { operation: &'static str, detail: String },
}

impl AwsError {
    /// The API call that failed (`iam:ListUsers`), where there was one.
    pub fn operation(&self) -> Option<&'static str> {
        match self {
            AwsError::Unreachable { operation, .. }
            | AwsError::BadCredentials { operation, .. }
            | AwsError::AccessDenied { operation, .. }
            | AwsError::Throttled { operation, .. }
            | AwsError::HubNotEnabled { operation, .. }
            | AwsError::NotFound { operation, .. }
            | AwsError::Service { operation, .. }
            | AwsError::Unexpected { operation, .. } => Some(operation),
            AwsError::NoCredentials { .. } | AwsError::NoSuchUser(_) => None,
        }
    }

    /// AWS's error code, or the kind of failure where AWS gave none.
    pub fn code(&self) -> &str {
        match self {
            AwsError::NoCredentials { .. } => "NoCredentials",
            AwsError::Unreachable { .. } => "Unreachable",
            AwsError::BadCredentials { code, .. } | AwsError::Service { code, .. } => code,
            AwsError::AccessDenied { .. } => "AccessDenied",
            AwsError::Throttled { .. } => "Throttling",
            AwsError::HubNotEnabled { .. } => "InvalidAccessException",
            AwsError::NotFound { .. } | AwsError::NoSuchUser(_) => "NoSuchEntity",
            AwsError::Unexpected { .. } => "Unexpected",
        }
    }

    /// No answer came back: the call may have taken effect (the connection
    /// dropped or timed out, the answer was cut short). An error AWS
    /// answered, a server error included, is a definite answer: nothing
    /// was done, and a key that appears later is someone else's.
    pub fn may_have_taken_effect(&self) -> bool {
        matches!(self, AwsError::Unreachable { .. } | AwsError::Unexpected { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, AwsError::NotFound { .. })
    }

    /// Access denied for an operation of the credential report.
    pub fn is_report_denied(&self) -> bool {
        matches!(self, AwsError::AccessDenied { operation, .. } if operation.ends_with("CredentialReport"))
    }
}

/// `None` where the thing asked for does not exist: reads that may find
/// nothing, and deletes that a crashed attempt may already have done.
pub fn found<T>(result: Result<T, AwsError>) -> Result<Option<T>, AwsError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

const ACCESS_DENIED: &[&str] = &["AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess"];
const THROTTLED: &[&str] = &["Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException", "RequestThrottled", "LimitExceededException"];
const BAD_CREDENTIALS: &[&str] = &["InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException", "InvalidAccessKeyId"];
const NOT_FOUND: &[&str] = &["NoSuchEntity", "NoSuchEntityException", "ResourceNotFoundException", "ParameterNotFound", "ParameterVersionNotFound"];

/// Turns an SDK error of `operation` (like `iam:ListUsers`) into an [`AwsError`].
pub fn classify<E>(operation: &'static str, endpoint: &str, err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = DisplayErrorContext(&err).to_string();
    match &err {
        // No AWS error in the answer (a proxy's or load balancer's HTML
        // page): its HTTP status is what happened.
        SdkError::ServiceError(service) if service.err().code().is_none() => {
            let status = service.raw().status().as_u16();
            let message = format!("the server answered HTTP {status} without an AWS error (a proxy, a load balancer, or the service failing)");
            AwsError::Service { operation, code: format!("HTTP {status}"), message, request_id: None }
        }
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("Unknown").to_owned();
            let message = e.message().unwrap_or("no message").to_owned();
            let has = |list: &[&str]| list.contains(&code.as_str());
            if has(ACCESS_DENIED) {
                AwsError::AccessDenied { operation, message }
            } else if has(THROTTLED) {
                AwsError::Throttled { operation, message }
            } else if has(BAD_CREDENTIALS) {
                AwsError::BadCredentials { operation, code, message }
            } else if code == "InvalidAccessException" {
                AwsError::HubNotEnabled { operation, message }
            } else if has(NOT_FOUND) {
                AwsError::NotFound { operation, message }
            } else {
                let request_id = e.meta().extra("aws_request_id").map(str::to_owned);
                AwsError::Service { operation, code, message, request_id }
            }
        }
        _ if credentials_error(&err).is_some() => {
            let detail = match credentials_error(&err) {
                Some(CredentialsError::CredentialsNotLoaded(_)) => None,
                _ => Some(root_cause(&err)),
            };
            AwsError::NoCredentials { detail }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => AwsError::Unreachable {
            operation,
            endpoint: endpoint.to_owned(),
            detail: root_cause(&err),
        },
        // An answer that could not be read: what was wrong with it, not the
        // SDK's dump of the whole response.
        SdkError::ResponseError(_) => AwsError::Unexpected { operation, detail: root_cause(&err) },
        _ => AwsError::Unexpected { operation, detail },
    }
}

/// The credential chain's error, wherever the SDK wrapped it: with none
/// found, the request never left, whatever the endpoint.
fn credentials_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a CredentialsError> {
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(found) = e.downcast_ref::<CredentialsError>() {
            return Some(found);
        }
        cause = e.source();
    }
    None
}

/// The innermost cause is what a person can act on ("Connection refused");
/// the SDK's chain of wrappers around it is noise.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}
