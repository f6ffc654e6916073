//! `rekey role-plan`: the roles that would replace a user's access keys
//! (SPEC section 9). The keys' CloudTrail events (as `consumers` reads
//! them, with their resources) make the proposals; the user's policies
//! (inline, attached, its groups') bound what history cannot show; IAM's
//! last-used data of each key tells of a consumer history does not hold.

use crate::accounts::Accounts;
use crate::cli::{RolePlanArgs, RolePlanFormat};
use crate::settings::Settings;
use crate::terminal::Terminal;
use crate::trail::{plan_events, trails};
use anyhow::bail;
use jiff::{SignedDuration, Timestamp};
use rekey_aws::cloudtrail::HISTORY;
use rekey_aws::error::found;
use rekey_aws::{AwsError, Clients, Iam};
use rekey_core::consumers::TrailEvent;
use rekey_core::role_plan::allowed::allowed_actions;
use rekey_core::role_plan::{PlanEvent, RolePlan, POLICIES_NOT_GIVEN};
use rekey_core::{AccessKeyId, UserName};

pub async fn run(args: RolePlanArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let base = Clients::new(&settings.aws).await;
    let accounts = Accounts::new(&base, settings, None);
    let (account, clients) = accounts.account_and_clients(args.account.as_ref()).await?;
    let iam = Iam::new(&clients);
    let mut warnings = Vec::new();
    // A key rotated away (even deleted) keeps its history: `--key` may name one.
    let keys: Vec<String> = match &args.key {
        Some(key) => vec![key.clone()],
        None => match found(iam.list_access_keys(&args.user).await)? {
            Some(keys) => keys.into_iter().map(|k| k.id.to_string()).collect(),
            None => return Err(AwsError::NoSuchUser(args.user.clone()).into()),
        },
    };
    if keys.is_empty() {
        warnings.push(format!("IAM user {} has no access key: there is nothing to replace (name a deleted key's id with --key to plan from its history)", args.user));
    }
    // Before CloudTrail, whose pages are slow: an unknown user fails here.
    let allowed = policies(&iam, &args.user, &mut warnings).await?;

    if args.since.to_signed() > HISTORY {
        warnings.push(format!("--since {} is beyond CloudTrail's 90 days of event history: looking 90 days back", args.since));
    }
    let from = Timestamp::now() - args.since.to_signed().min(HISTORY);
    let (events, unread) = match plan_events(&trails(settings, &clients), &keys, from).await {
        Ok(found) => found,
        Err(e) => bail!("CloudTrail's event history cannot be read ({e}); a role plan is made from it (`rekey scan` shows the keys' last use)"),
    };
    warnings.extend(unread);
    warnings.extend(unexplained_uses(&iam, &keys, &events, from, settings.timings().last_used_margin.to_signed()).await);

    let mut plan = RolePlan::build(&account.to_string(), args.user.as_str(), &events, &allowed);
    // Said better by [`policies`]: they allow nothing, or could not be read.
    plan.warnings.retain(|w| !(allowed.is_empty() && w == POLICIES_NOT_GIVEN));
    plan.warnings.extend(warnings);
    match args.format {
        RolePlanFormat::Text => outln!("{}", plan.to_text().trim_end())?,
        RolePlanFormat::Json => outln!("{}", plan.to_json())?,
        RolePlanFormat::Cloudformation => outln!("{}", plan.to_cloudformation().trim_end())?,
        RolePlanFormat::Terraform => outln!("{}", plan.to_terraform().trim_end())?,
    }
    // The text lists its warnings; the other formats are for machines.
    if args.format != RolePlanFormat::Text {
        for w in &plan.warnings {
            term.warn(w);
        }
    }
    term.report_calls(base.calls());
    Ok(0)
}

/// The action patterns the user's policies allow, each case said in a
/// warning. Denied: none, with a warning naming the action (a plan is
/// still worth having); no such user: an error.
async fn policies(iam: &Iam, user: &UserName, warnings: &mut Vec<String>) -> anyhow::Result<Vec<String>> {
    match iam.user_policy_documents(user).await {
        Ok(Some(documents)) => {
            let allowed = allowed_actions(&documents);
            warnings.extend(allowed.warnings());
            let whose = if documents.is_empty() { "the user has no IAM policy (inline, attached or through a group)" } else { "the user's policies allow no action" };
            if allowed.actions.is_empty() {
                warnings.push(format!("{whose}: whatever a proposal lists was allowed by something else (a resource policy?), and nothing bounds what history cannot show"));
            }
            Ok(allowed.actions)
        }
        Ok(None) => Err(AwsError::NoSuchUser(user.clone()).into()),
        Err(e @ AwsError::AccessDenied { .. }) => {
            warnings.push(format!("the user's policies cannot be read, so allowed_not_seen cannot list what a proposal may miss: {e}"));
            Ok(Vec::new())
        }
        Err(e) => Err(e.into()),
    }
}

/// For each key, the last use IAM recorded (service, region, time) since
/// `from` that no event explains (an event of that service and region
/// within `margin` of it): a consumer making only data calls, which event
/// history does not hold (SPEC section 8).
async fn unexplained_uses(iam: &Iam, keys: &[String], events: &[PlanEvent], from: Timestamp, margin: SignedDuration) -> Vec<String> {
    let mut out = Vec::new();
    for key in keys {
        let used = match found(iam.access_key_last_used(&AccessKeyId::new(key.as_str())).await) {
            Ok(Some(used)) => used,
            Ok(None) => continue,
            Err(e) => {
                out.push(format!("IAM's last-used data of {key} cannot be read ({e}): a consumer making only data calls would go unnoticed"));
                continue;
            }
        };
        let Some(at) = used.at.filter(|at| *at >= from) else { continue };
        let explained = events.iter().any(|e| {
            e.readable
                && used.service.as_ref().is_none_or(|s| *s == TrailEvent::service_of(&e.event_source))
                && used.region.as_ref().is_none_or(|r| *r == e.region)
                && (e.time - at).abs() <= margin
        });
        if !explained {
            let service = used.service.as_deref().unwrap_or("an unknown service");
            let region = used.region.as_deref().unwrap_or("an unknown region");
            out.push(format!(
                "{key} was last used at {at} by {service} in {region} (IAM's last-used data), and no CloudTrail event explains it: \
                 a consumer making only data calls (S3 object calls, Lambda Invoke, DynamoDB item calls) uses the key, and no proposal \
                 covers it; what the user's policies allow of those calls is in allowed_not_seen"
            ));
        }
    }
    out
}
