//! `rekey findings`: Security Hub's IAM.3 findings of the account, read with
//! server-side filters (control, record state, account, and the workflow
//! and compliance statuses asked for), each with the user's keys as the
//! scan sees them.

use crate::accounts::Accounts;
use crate::cli::{FailOn, FindingsArgs, FindingsFormat};
use crate::scanning::{at_or_above, collect, tell_problems, Scope};
use crate::table::{self, Column};
use crate::settings::Settings;
use crate::terminal::Terminal;
use anyhow::bail;
use rekey_aws::securityhub::{Finding, FindingQuery, SecurityHub};
use rekey_aws::Clients;
use rekey_core::hub::Workflow;
use rekey_core::report::KeyRow;
use rekey_core::Compliance;
use serde::Serialize;

#[derive(Serialize)]
struct FindingOut<'a> {
    finding_id: &'a str,
    account_id: &'a str,
    user_name: &'a str,
    compliance_status: Option<&'a str>,
    workflow_status: Workflow,
    note: Option<&'a str>,
    keys: Vec<&'a KeyRow>,
}

pub async fn run(args: FindingsArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    if !settings.file.securityhub.enabled {
        bail!("Security Hub is off in rekey.toml (securityhub.enabled = false); `rekey scan` shows the same keys without it");
    }
    let base = Clients::new(&settings.aws).await;
    let accounts = Accounts::new(&base, settings, None);
    let (account, clients) = accounts.account_and_clients(args.account.as_ref()).await?;
    let hub = SecurityHub::new(&clients, settings.file.securityhub.region.as_deref());
    let query = FindingQuery {
        account_id: Some(account.to_string()),
        users: args.users.iter().map(ToString::to_string).collect(),
        workflow: args.workflow.iter().map(|w| (*w).into()).collect(),
        compliance: args.compliance.iter().map(|c| c.as_str().to_owned()).collect(),
    };
    let mut findings = hub.iam3_findings(&query).await?;
    findings.sort_by(|a, b| (rank(a), &a.user_name).cmp(&(rank(b), &b.user_name)));

    // The credential report costs the same few calls for one user or all,
    // and a user deleted since Security Hub looked is simply not in it.
    let report = match findings.is_empty() {
        true => None,
        false => Some(collect(&Scope::account(settings), settings, &clients, &clients, &term.progress()).await?),
    };
    let keys = report.as_ref().map(|r| r.keys.as_slice()).unwrap_or_default();
    let out: Vec<FindingOut> = findings
        .iter()
        .map(|f| FindingOut {
            finding_id: &f.id,
            account_id: &f.account_id,
            user_name: &f.user_name,
            compliance_status: f.compliance_status.as_deref(),
            workflow_status: f.workflow_status,
            note: f.note.as_deref(),
            keys: keys.iter().filter(|k| k.account_id == f.account_id && k.user_name == f.user_name).collect(),
        })
        .collect();
    match args.format {
        FindingsFormat::Json => outln!("{}", serde_json::to_string_pretty(&serde_json::json!({ "findings": out }))?)?,
        FindingsFormat::Csv => csv(&out)?,
        FindingsFormat::Table if out.is_empty() => outln!("No IAM.3 findings match.")?,
        FindingsFormat::Table => outln!("{}", table_of(&out))?,
    }
    term.report_calls(clients.calls());
    if let Some(report) = &report {
        tell_problems(report, term);
        if !report.errors.is_empty() {
            return Ok(2);
        }
    }
    Ok(if findings.iter().any(|f| open_at_or_above(f, args.fail_on)) { 1 } else { 0 })
}

/// An open finding (not suppressed or resolved) whose compliance status is
/// at or above `fail_on`.
fn open_at_or_above(f: &Finding, fail_on: FailOn) -> bool {
    let open = matches!(f.workflow_status, Workflow::New | Workflow::Notified);
    let result = match f.compliance_status.as_deref() {
        Some("FAILED") => Compliance::Failed,
        Some("WARNING") => Compliance::Warning,
        _ => Compliance::Passed,
    };
    open && at_or_above(result, fail_on)
}

/// Failing and open first.
fn rank(f: &Finding) -> (u8, u8) {
    let compliance = match f.compliance_status.as_deref() {
        Some("FAILED") => 0,
        Some("WARNING") => 1,
        _ => 2,
    };
    let workflow = match f.workflow_status {
        Workflow::New => 0,
        Workflow::Notified => 1,
        Workflow::Suppressed => 2,
        Workflow::Resolved => 3,
    };
    (compliance, workflow)
}

fn worst_key<'a>(f: &FindingOut<'a>) -> Option<&'a KeyRow> {
    f.keys.iter().copied().min_by_key(|k| (k.result, std::cmp::Reverse(k.age_days)))
}

fn table_of(out: &[FindingOut]) -> String {
    let cells = |get: &dyn Fn(&FindingOut) -> String| out.iter().map(get).collect::<Vec<_>>();
    let columns = vec![
        Column::whole("USER", cells(&|f| f.user_name.to_owned())),
        Column::whole("COMPLIANCE", cells(&|f| f.compliance_status.unwrap_or("-").to_owned())),
        Column::whole("WORKFLOW", cells(&|f| f.workflow_status.to_string())),
        Column::whole("OLDEST KEY", cells(&|f| worst_key(f).map(|k| format!("{}d", k.age_days)).unwrap_or_else(|| "-".into()))).right(),
        Column::whole("SCAN", cells(&|f| worst_key(f).map(|k| k.result.as_str().to_owned()).unwrap_or_else(|| "-".into()))),
        Column::text("NOTE", cells(&|f| f.note.unwrap_or("").to_owned()), 20),
    ];
    table::render(columns, &["NOTE", "SCAN"], table::width(), false)
}

fn csv(out: &[FindingOut]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(std::io::stdout().lock());
    w.write_record(["finding_id", "account_id", "user_name", "compliance_status", "workflow_status", "note", "access_key_ids", "worst_result"])?;
    for f in out {
        let ids: Vec<&str> = f.keys.iter().filter_map(|k| k.access_key_id.as_deref()).collect();
        let worst = worst_key(f).map(|k| k.result.as_str()).unwrap_or("");
        let cells = [f.finding_id, f.account_id, f.user_name, f.compliance_status.unwrap_or(""), f.workflow_status.as_str(), f.note.unwrap_or(""), &ids.join(" "), worst];
        w.write_record(cells.map(crate::output::spreadsheet_safe))?;
    }
    w.flush()?;
    Ok(())
}
