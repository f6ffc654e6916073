//! `rekey consumers`: who uses a user's keys, from CloudTrail event
//! history: one line per (key, source IP, user agent, service), newest
//! first, with the calls it makes and whether it runs inside AWS.

use crate::accounts::Accounts;
use crate::cli::{ConsumersArgs, ListFormat};
use crate::settings::Settings;
use crate::table::{self, Column};
use crate::terminal::Terminal;
use crate::trail::{events, trails};
use rekey_aws::cloudtrail::HISTORY;
use anyhow::bail;
use rekey_aws::error::found;
use rekey_aws::{AwsError, Clients, Iam};
use rekey_core::consumers::{consumers, role_reason, Consumer};

pub async fn run(args: ConsumersArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let base = Clients::new(&settings.aws).await;
    let accounts = Accounts::new(&base, settings, None);
    let (_, clients) = accounts.account_and_clients(args.account.as_ref()).await?;
    // A key rotated away (even deleted) keeps its history: `--key` may name one.
    let keys: Vec<String> = match &args.key {
        Some(key) => vec![key.clone()],
        None => match found(Iam::new(&clients).list_access_keys(&args.user).await)? {
            Some(keys) => keys.into_iter().map(|k| k.id.to_string()).collect(),
            None => return Err(AwsError::NoSuchUser(args.user.clone()).into()),
        },
    };
    let mut warnings = Vec::new();
    if args.since.to_signed() > HISTORY {
        warnings.push(format!("--since {} is beyond CloudTrail's 90 days of event history: looking 90 days back", args.since));
    }
    let from = jiff::Timestamp::now() - args.since.to_signed().min(HISTORY);
    let (events, unread) = match events(&trails(settings, &clients), &keys, from).await {
        Ok(found) => found,
        Err(e) => bail!("CloudTrail's event history cannot be read ({e}); the keys' last use is in `rekey scan`"),
    };
    warnings.extend(unread);
    let found = consumers(&events);
    match args.format {
        ListFormat::Json => {
            let out = serde_json::json!({"consumers": found, "role_candidate": role_reason(&found), "warnings": warnings});
            outln!("{}", serde_json::to_string_pretty(&out)?)?;
        }
        ListFormat::Table if found.is_empty() => outln!("No CloudTrail events for {} since {from}.", keys.join(", "))?,
        ListFormat::Table => {
            outln!("{}", table_of(&found))?;
            if let Some(reason) = role_reason(&found) {
                outln!("role candidate: {reason}")?;
            }
        }
    }
    for w in &warnings {
        term.warn(w);
    }
    term.report_calls(base.calls());
    Ok(0)
}

fn table_of(found: &[Consumer]) -> String {
    let cells = |f: &dyn Fn(&Consumer) -> String| found.iter().map(f).collect::<Vec<_>>();
    let columns = vec![
        Column::whole("KEY", cells(&|c| c.access_key_id.clone())),
        Column::whole("SOURCE", cells(&|c| c.source_ip.clone())),
        Column::whole("SERVICE", cells(&|c| c.service.clone())),
        Column::whole("LAST SEEN", cells(&|c| c.last_seen.strftime("%Y-%m-%d %H:%M").to_string())),
        Column::whole("CALLS", cells(&|c| c.calls.to_string())).right(),
        Column::text("TOP CALLS", cells(&|c| c.top_calls.join(", ")), 12),
        Column::text("USER AGENT", cells(&|c| c.user_agent.clone()), 16),
    ];
    table::render(columns, &["TOP CALLS", "USER AGENT"], table::width(), false)
}
