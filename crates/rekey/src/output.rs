//! Renderers of the scan report: json, jsonl and csv for machines (the
//! contract of SPEC section 3), table for people.

use crate::cli::Format;
use crate::table::{self, count, Column};
use comfy_table::Color;
use rekey_core::asff::{self, AsffContext};
use rekey_core::ocsf;
use rekey_core::report::{KeyRow, ScanReport};
use rekey_core::Compliance;
use std::io::Write;

/// `region`: the Security Hub region that ASFF and OCSF findings name.
pub fn render_scan(report: &ScanReport, format: Format, colour: bool, region: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    match format {
        Format::Html => out.write_all(rekey_core::html::render(report).as_bytes())?,
        Format::Asff => {
            let ctx = AsffContext::new(region, report.generated_at);
            serde_json::to_writer_pretty(&mut *out, &asff::findings(&report.keys, &ctx))?;
            writeln!(out)?;
        }
        Format::Ocsf => {
            serde_json::to_writer_pretty(&mut *out, &ocsf::findings(&report.keys, report.generated_at, region))?;
            writeln!(out)?;
        }
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, report)?;
            writeln!(out)?;
        }
        Format::Jsonl => {
            for row in &report.keys {
                serde_json::to_writer(&mut *out, row)?;
                writeln!(out)?;
            }
        }
        Format::Csv => csv(report, out)?,
        Format::Table => table(report, colour, out)?,
    }
    Ok(())
}

const CSV_COLUMNS: [&str; 17] = [
    "account_id", "user_name", "user_arn", "access_key_id", "status", "created_at", "age_days",
    "last_used_at", "last_used_service", "last_used_region", "owner", "result", "reason",
    "exemption", "rotation", "role_candidate", "retire",
];

/// The key objects' columns; a `null` is an empty cell, the nested
/// exemption and rotation are their reason and id. Cells a spreadsheet would
/// run as a formula are neutralised ([`spreadsheet_safe`]).
fn csv(report: &ScanReport, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_COLUMNS)?;
    for r in &report.keys {
        let opt = |v: Option<&str>| v.unwrap_or("").to_owned();
        let cells = [
            r.account_id.clone(),
            r.user_name.clone(),
            r.user_arn.clone(),
            opt(r.access_key_id.as_deref()),
            r.status.as_str().to_owned(),
            r.created_at.to_string(),
            r.age_days.to_string(),
            opt(r.last_used_at.map(|t| t.to_string()).as_deref()),
            opt(r.last_used_service.as_deref()),
            opt(r.last_used_region.as_deref()),
            opt(r.owner.as_deref()),
            r.result.as_str().to_owned(),
            r.reason.clone(),
            opt(r.exemption.as_ref().map(|e| e.reason.as_str())),
            opt(r.rotation.as_ref().map(|r| r.id.as_str())),
            r.role_candidate.to_string(),
            r.retire.to_string(),
        ];
        w.write_record(cells.iter().map(|c| spreadsheet_safe(c)))?;
    }
    w.flush()?;
    Ok(())
}

/// OWASP's advice against CSV injection: a cell starting with `=`, `+`,
/// `-`, `@`, tab or CR is a formula to a spreadsheet, so it gets a leading
/// `'`. IAM user names may start with `+`, `=`, `-` or `@`; JSON keeps them exact.
pub fn spreadsheet_safe(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
}

/// Several accounts: one table each, under a line with the account's totals.
fn table(report: &ScanReport, colour: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    if report.accounts.is_empty() {
        writeln!(out, "{}", key_table(report.keys.iter().collect(), colour))?;
    }
    for account in &report.accounts {
        let name = account.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
        let s = &account.summary;
        if !account.scanned {
            writeln!(out, "account {}{name}: not scanned (see the errors below)\n", account.account_id)?;
            continue;
        }
        writeln!(out, "account {}{name}: {}, {} failed, {} warning, {} suppressed, {} passed", account.account_id, count(s.keys, "key"), s.failed, s.warning, s.suppressed, s.passed)?;
        let rows: Vec<&KeyRow> = report.keys.iter().filter(|k| k.account_id == account.account_id).collect();
        if !rows.is_empty() {
            writeln!(out, "{}", key_table(rows, colour))?;
        }
        writeln!(out)?;
    }
    let s = &report.summary;
    writeln!(
        out,
        "{}, {}: {} failed, {} warning, {} suppressed, {} passed\n{} failing, {} warning",
        count(s.users, "user"), count(s.keys, "key"), s.failed, s.warning, s.suppressed, s.passed,
        count(s.users_failed, "user"), count(s.users_warning, "user"),
    )?;
    writeln!(out, "limit {}, as of {}, source {}", report.max_age, report.as_of, report.source)?;
    if let Some(taken) = report.report_generated_at {
        let age = age_text(report.generated_at.as_second() - taken.as_second());
        writeln!(out, "credential report generated at {taken}, {age} before this scan;\nkeys that may need action were re-read now")?;
    }
    for f in &report.other_findings {
        writeln!(out, "{} {} {}: {}", f.control, f.account_id, f.user_name, f.reason)?;
    }
    for (label, notes) in [("warning", &report.warnings), ("error", &report.errors)] {
        for n in notes {
            writeln!(out, "{label}: {}{}", n.user_name.as_deref().map(|u| format!("{u}: ")).unwrap_or_default(), n.message)?;
        }
    }
    Ok(())
}

/// Worst first, then oldest first; ages right-aligned; colour only on a
/// terminal. Fits [`table::width`]: the role hint goes first, then the
/// last use loses its time and service, then the reason, the last use and
/// the owner go, before a name or key id would be broken.
fn key_table(mut rows: Vec<&KeyRow>, colour: bool) -> String {
    rows.sort_by(|a, b| (a.result, -a.age_days, &a.user_name).cmp(&(b.result, -b.age_days, &b.user_name)));
    let cells = |f: &dyn Fn(&KeyRow) -> String| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    let colours = rows.iter().map(|r| match (colour, r.result) {
        (false, _) => None,
        (true, Compliance::Failed) => Some(Color::Red),
        (true, Compliance::Warning) => Some(Color::Yellow),
        (true, Compliance::Suppressed) => Some(Color::Blue),
        (true, Compliance::Passed) => Some(Color::Green),
    });
    let last_used = |r: &KeyRow, format: &str| match (&r.last_used_at, &r.last_used_service) {
        (None, _) => "never".to_owned(),
        (Some(at), Some(service)) if format.contains('H') => format!("{} ({service})", at.strftime(format)),
        (Some(at), _) => at.strftime(format).to_string(),
    };
    let columns = vec![
        Column::whole("RESULT", cells(&|r| r.result.as_str().to_owned())).colours(colours.collect()),
        Column::whole("USER", cells(&|r| r.user_name.clone())),
        Column::whole("ACCESS KEY", cells(&|r| r.access_key_id.clone().unwrap_or_else(|| "-".into()))),
        Column::whole("STATUS", cells(&|r| r.status.as_str().to_owned())),
        Column::whole("AGE", cells(&|r| format!("{}d", r.age_days))).right(),
        Column::whole("LAST USED", cells(&|r| last_used(r, "%Y-%m-%d %H:%M"))).or_shorter(cells(&|r| last_used(r, "%Y-%m-%d"))),
        Column::whole("OWNER", cells(&|r| r.owner.clone().unwrap_or_else(|| "-".into()))),
        Column::text("REASON", cells(&|r| r.reason.clone()), 24),
        // A hint, not a result: the first column to go on a narrow terminal.
        Column::whole("ROLE?", cells(&|r| if r.retire { "retire".into() } else if r.role_candidate { "maybe".into() } else { "-".into() })),
    ];
    table::render(columns, &["ROLE?", "LAST USED", "REASON", "LAST USED", "OWNER"], table::width(), colour)
}

/// `2h 13m`, `45m`, `0m`.
fn age_text(secs: i64) -> String {
    let minutes = secs.max(0) / 60;
    match minutes / 60 {
        0 => format!("{minutes}m"),
        hours => format!("{hours}h {}m", minutes % 60),
    }
}

/// Writes `text` to `path` whole or not at all (a temporary file in the
/// same directory, renamed over it), so a reader never sees half a file.
/// The file is readable by its owner only, unless `world_readable`.
pub fn write_atomically(path: &std::path::Path, text: &str, world_readable: bool) -> Result<(), String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    temp.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    if world_readable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o644)).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    temp.persist(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised() {
        for cell in ["=HYPERLINK(\"x\")", "+ci", "-deploy", "@corp", "\tx", "\rx"] {
            assert_eq!(spreadsheet_safe(cell), format!("'{cell}"));
        }
        for cell in ["AKIA123", "2026-01-01T00:00:00Z", "active key is 1 days old", "", "a=b"] {
            assert_eq!(spreadsheet_safe(cell), cell);
        }
    }

    #[test]
    fn report_age_in_hours_and_minutes() {
        assert_eq!(age_text(7980), "2h 13m");
        assert_eq!(age_text(59), "0m");
        assert_eq!(age_text(-5), "0m");
    }
}
