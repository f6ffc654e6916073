//! `rekey scan --format html`: the scan report as one self-contained page,
//! for a security team that opens it from a file or a mail attachment.
//!
//! Self-contained because attachments are opened offline and anything
//! fetched would tell a third party who reads the report: the CSS, the
//! histogram (SVG) and the one script are inline, and the
//! Content-Security-Policy fetches nothing and runs only that script (by
//! its hash). Everything is in the HTML itself: without JavaScript the page
//! reads the same, only the filters are missing. Every value from outside
//! (user names, owners, reasons, exemptions, messages) is escaped, in text
//! and in attributes; the script reads rows only through their `data-`
//! attributes, and no value is ever spliced into it.
//!
//! The page, top to bottom: the scan's facts (when, as of, max age,
//! source, credential report time); totals per result and users; totals per
//! account; errors, warnings and other findings; a histogram of key ages
//! with the max age marked; every key, worst first (FAILED, WARNING,
//! SUPPRESSED, PASSED), then oldest first, with filters by account, owner
//! and result.
//!
//! # Hooks for tests and scripts
//!
//! Stable ids and attributes; numbers are plain decimal text.
//!
//! - `#total-failed`, `#total-warning`, `#total-suppressed`,
//!   `#total-passed`, `#total-keys`, `#total-users`, `#total-users-failed`,
//!   `#total-users-warning`: the report's `summary`, never filtered.
//! - `#accounts tbody tr[data-account]`: one row per account (with keys, or
//!   named by an error or warning); its cells `td[data-col]`, `data-col`
//!   being `keys`, `failed`, `warning`, `suppressed`, `passed` or `errors`.
//! - `#errors li`, `#warnings li`, `#other-findings li`, each with
//!   `data-account` and `data-user` (empty when the note names none).
//! - `#histogram`: the SVG, `data-bucket-days` the bucket width;
//!   `g.bucket` per bucket with `data-from`, `data-to` (ages in days,
//!   inclusive) and `data-count`; `#max-age-line` with `data-days`.
//! - `#keys tbody tr.key`: one row per key, in page order, with
//!   `data-account`, `data-user`, `data-owner` (empty: no owner),
//!   `data-result` (`FAILED`, ...), `data-status` and `data-age` (days). A
//!   row the filters hide has the `hidden` attribute.
//! - `#filter-account`, `#filter-owner`, `#filter-result`: the filters
//!   (`select`; value `""` for all, else `=` and the value, `=` alone
//!   being "no owner"). `#filters` is `hidden` until the script ran.
//! - `#shown-keys`, `#shown-failed`, `#shown-warning`, `#shown-suppressed`,
//!   `#shown-passed`: the rows the filters leave, updated as they change.
//! - The URL fragment sets the filters on load and follows them, as a
//!   query string: `#result=FAILED&owner=team-a&account=123456789012`
//!   (`owner=` alone: no owner).
//! - `html[data-js="ready"]` once the script has run.

use crate::evaluate::Compliance;
use crate::notice::escape_html as esc;
use crate::report::{KeyRow, Note, ScanReport};
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::fmt::Write as _;

const RESULTS: [Compliance; 4] = [Compliance::Failed, Compliance::Warning, Compliance::Suppressed, Compliance::Passed];

/// The histogram has at most this many bars: more would be too thin to
/// read at a laptop's width.
const MAX_BUCKETS: i64 = 24;

/// The whole page.
pub fn render(report: &ScanReport) -> String {
    let mut out = String::with_capacity(24 * 1024 + report.keys.len() * 900);
    head(&mut out, report);
    facts(&mut out, report);
    totals(&mut out, report);
    accounts(&mut out, report);
    notes(&mut out, report);
    histogram(&mut out, report);
    keys(&mut out, report);
    writeln!(out, "<script>{SCRIPT}</script>\n</body>\n</html>").ok();
    out
}

fn head(out: &mut String, report: &ScanReport) {
    let s = &report.summary;
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // `default-src 'none'` covers fetches of every kind (images, fonts,
    // frames, connections); base and form targets are not covered by it.
    writeln!(
        out,
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; \
         script-src '{SCRIPT_SHA256}'; base-uri 'none'; form-action 'none'\">"
    )
    .ok();
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    writeln!(
        out,
        "<title>rekey scan: {} FAILED, {} WARNING of {} keys, as of {}</title>",
        s.failed,
        s.warning,
        s.keys,
        report.as_of.strftime("%Y-%m-%d")
    )
    .ok();
    out.push_str(STYLE);
    out.push_str("</head>\n<body>\n");
}

fn facts(out: &mut String, report: &ScanReport) {
    out.push_str("<header>\n<h1>IAM.3 access key scan</h1>\n");
    writeln!(
        out,
        "<p class=\"lead\">AWS Security Hub control IAM.3: an active access key older than {} fails. \
         Rotate it, or record why it cannot be rotated yet.</p>",
        esc(&max_age_text(report))
    )
    .ok();
    out.push_str("<dl class=\"facts\">\n");
    writeln!(out, "<dt>Generated</dt><dd id=\"generated-at\">{}</dd>", time(report.generated_at)).ok();
    writeln!(out, "<dt>Keys as of</dt><dd id=\"as-of\">{}</dd>", time(report.as_of)).ok();
    writeln!(
        out,
        "<dt>Max age</dt><dd id=\"max-age\" data-days=\"{}\">{}</dd>",
        report.max_age_days,
        esc(&max_age_text(report))
    )
    .ok();
    writeln!(out, "<dt>Source</dt><dd id=\"source\">{}</dd>", esc(report.source)).ok();
    let taken = match report.report_generated_at {
        Some(t) => time(t),
        None => "none: keys read from the IAM API".to_owned(),
    };
    writeln!(out, "<dt>Credential report</dt><dd id=\"report-generated-at\">{taken}</dd>").ok();
    out.push_str("</dl>\n</header>\n");
}

/// `90 days` when the limit is whole days (as Security Hub words it), else
/// as written (`36h`).
fn max_age_text(report: &ScanReport) -> String {
    if report.max_age.as_secs().is_multiple_of(86_400) {
        format!("{} days", report.max_age.whole_days())
    } else {
        report.max_age.to_string()
    }
}

/// A timestamp people read (UTC to the second) that machines can too.
fn time(t: Timestamp) -> String {
    format!("<time datetime=\"{t}\">{}</time>", t.strftime("%Y-%m-%d %H:%M:%S UTC"))
}

fn totals(out: &mut String, report: &ScanReport) {
    let s = &report.summary;
    out.push_str("<section id=\"totals\">\n<h2>Totals</h2>\n<div class=\"cards\">\n");
    let cards: [(&str, &str, usize, &str); 8] = [
        ("failed", "failed", s.failed, "keys FAILED"),
        ("warning", "warning", s.warning, "keys WARNING (fail within the warning window)"),
        ("suppressed", "suppressed", s.suppressed, "keys SUPPRESSED (exempt)"),
        ("passed", "passed", s.passed, "keys PASSED"),
        ("keys", "", s.keys, "keys"),
        ("users", "", s.users, "users"),
        ("users-failed", "failed", s.users_failed, "users with a FAILED key"),
        ("users-warning", "warning", s.users_warning, "users whose worst key is a WARNING"),
    ];
    for (id, class, n, label) in cards {
        writeln!(out, "<div class=\"card {class}\"><span class=\"n\" id=\"total-{id}\">{n}</span> {label}</div>").ok();
    }
    out.push_str("</div>\n</section>\n");
}

/// Counts of one account: keys by result, and errors naming it.
#[derive(Debug, Default, PartialEq, Eq)]
struct AccountTotals {
    keys: usize,
    /// By [`RESULTS`] order.
    results: [usize; 4],
    errors: usize,
}

/// Every account with keys or named by a note, by id. An account whose
/// keys could not be read at all still shows, with its errors.
fn account_totals(report: &ScanReport) -> BTreeMap<&str, AccountTotals> {
    let mut accounts: BTreeMap<&str, AccountTotals> = BTreeMap::new();
    for row in &report.keys {
        let totals = accounts.entry(&row.account_id).or_default();
        totals.keys += 1;
        totals.results[result_index(row.result)] += 1;
    }
    for account in report.warnings.iter().filter_map(|n| n.account_id.as_deref()) {
        accounts.entry(account).or_default();
    }
    for account in report.errors.iter().filter_map(|n| n.account_id.as_deref()) {
        accounts.entry(account).or_default().errors += 1;
    }
    accounts
}

fn result_index(result: Compliance) -> usize {
    match result {
        Compliance::Failed => 0,
        Compliance::Warning => 1,
        Compliance::Suppressed => 2,
        Compliance::Passed => 3,
    }
}

fn accounts(out: &mut String, report: &ScanReport) {
    out.push_str("<section>\n<h2>By account</h2>\n<table id=\"accounts\">\n<thead><tr><th>Account</th><th class=\"num\">Keys</th>");
    for result in RESULTS {
        writeln!(out, "<th class=\"num {}\">{}</th>", class(result), result.as_str()).ok();
    }
    out.push_str("<th class=\"num\">Errors</th></tr></thead>\n<tbody>\n");
    let accounts = account_totals(report);
    if accounts.is_empty() {
        out.push_str("<tr><td colspan=\"7\">No accounts: the report has no keys.</td></tr>\n");
    }
    for (account, totals) in accounts {
        let account = esc(account);
        write!(out, "<tr data-account=\"{account}\"><th scope=\"row\">{account}</th><td class=\"num\" data-col=\"keys\">{}</td>", totals.keys).ok();
        for (result, n) in RESULTS.iter().zip(totals.results) {
            write!(out, "<td class=\"num\" data-col=\"{}\">{n}</td>", class(*result)).ok();
        }
        writeln!(out, "<td class=\"num\" data-col=\"errors\">{}</td></tr>", totals.errors).ok();
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

/// The CSS class and `data-col` of a result: `failed`, ...
fn class(result: Compliance) -> &'static str {
    match result {
        Compliance::Failed => "failed",
        Compliance::Warning => "warning",
        Compliance::Suppressed => "suppressed",
        Compliance::Passed => "passed",
    }
}

fn notes(out: &mut String, report: &ScanReport) {
    out.push_str("<section id=\"notes\">\n");
    let lists = [
        ("errors", "Errors", &report.errors, "None: every user's keys were read."),
        ("warnings", "Warnings", &report.warnings, "None."),
    ];
    for (id, title, notes, none) in lists {
        writeln!(out, "<h2>{title} ({})</h2>", notes.len()).ok();
        if notes.is_empty() {
            writeln!(out, "<p class=\"none\">{none}</p>").ok();
        }
        writeln!(out, "<ul id=\"{id}\" class=\"notes\">").ok();
        for note in notes {
            note_item(out, note);
        }
        out.push_str("</ul>\n");
    }
    if !report.other_findings.is_empty() {
        writeln!(out, "<h2>Other findings ({})</h2>\n<ul id=\"other-findings\" class=\"notes\">", report.other_findings.len()).ok();
        for f in &report.other_findings {
            let (account, user) = (esc(&f.account_id), esc(&f.user_name));
            writeln!(
                out,
                "<li data-account=\"{account}\" data-user=\"{user}\"><strong>{}</strong> account {account}, user {user}: {}</li>",
                esc(f.control),
                esc(&f.reason)
            )
            .ok();
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
}

fn note_item(out: &mut String, note: &Note) {
    let account = note.account_id.as_deref().map(esc).unwrap_or_default();
    let user = note.user_name.as_deref().map(esc).unwrap_or_default();
    let mut place = Vec::new();
    if !account.is_empty() {
        place.push(format!("account {account}"));
    }
    if !user.is_empty() {
        place.push(format!("user {user}"));
    }
    let place = if place.is_empty() { String::new() } else { format!("<span class=\"where\">{}</span>: ", place.join(", ")) };
    writeln!(out, "<li data-account=\"{account}\" data-user=\"{user}\">{place}{}</li>", esc(&note.message)).ok();
}

/// Key ages in buckets of `width` days, the first from 0; each bucket's
/// keys counted by result ([`RESULTS`] order).
#[derive(Debug, PartialEq, Eq)]
struct Histogram {
    width: i64,
    buckets: Vec<[usize; 4]>,
}

/// Buckets of 30 days (a month), or of a multiple of 30 when that would
/// make more than [`MAX_BUCKETS`]; they reach the oldest key and the max
/// age, so the max age line is always on the chart.
fn histogram_of(keys: &[KeyRow], max_age_days: u64) -> Histogram {
    let oldest = keys.iter().map(|k| k.age_days.max(0)).max().unwrap_or(0);
    let max_age = i64::try_from(max_age_days).unwrap_or(i64::MAX);
    let span = oldest.max(max_age).saturating_add(1);
    let width = 30 * (span / (30 * MAX_BUCKETS) + i64::from(span % (30 * MAX_BUCKETS) != 0)).max(1);
    let count = span / width + i64::from(span % width != 0);
    let mut buckets = vec![[0; 4]; usize::try_from(count).unwrap_or(1)];
    for key in keys {
        let index = usize::try_from(key.age_days.max(0) / width).unwrap_or(0).min(buckets.len() - 1);
        buckets[index][result_index(key.result)] += 1;
    }
    Histogram { width, buckets }
}

fn histogram(out: &mut String, report: &ScanReport) {
    out.push_str("<section>\n<h2>Key ages</h2>\n");
    if report.keys.is_empty() {
        out.push_str("<p class=\"none\">No keys.</p>\n</section>\n");
        return;
    }
    let h = histogram_of(&report.keys, report.max_age_days);
    let (width, height, left, right, top, bottom) = (960.0, 280.0, 48.0, 16.0, 30.0, 44.0);
    let (plot_w, plot_h) = (width - left - right, height - top - bottom);
    let n = h.buckets.len();
    let slot = plot_w / n as f64;
    let tallest = h.buckets.iter().map(|b| b.iter().sum::<usize>()).max().unwrap_or(0).max(1);
    let y_of = |count: usize| top + plot_h - plot_h * count as f64 / tallest as f64;
    writeln!(
        out,
        "<svg id=\"histogram\" data-bucket-days=\"{}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-labelledby=\"histogram-title\">\n\
         <title id=\"histogram-title\">Access keys by age in {}-day buckets; the line marks the max age ({})</title>",
        h.width,
        h.width,
        esc(&max_age_text(report))
    )
    .ok();
    // Axes and the y scale: 0, the tallest bar and its half when whole.
    writeln!(out, "<line class=\"axis\" x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>", top + plot_h, left + plot_w, top + plot_h).ok();
    let mut ticks = vec![0, tallest];
    if tallest % 2 == 0 && tallest > 2 {
        ticks.push(tallest / 2);
    }
    for tick in ticks {
        let y = y_of(tick);
        writeln!(out, "<line class=\"grid\" x1=\"{left}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\"/><text class=\"tick\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{tick}</text>", left + plot_w, left - 6.0, y + 4.0).ok();
    }
    // Bars, each stacked by result, FAILED at the bottom.
    for (i, counts) in h.buckets.iter().enumerate() {
        let from = i as i64 * h.width;
        let to = from + h.width - 1;
        let total: usize = counts.iter().sum();
        let x = left + slot * i as f64 + slot * 0.075;
        let detail: Vec<String> = RESULTS.iter().zip(counts).filter(|(_, n)| **n > 0).map(|(r, n)| format!("{n} {}", r.as_str())).collect();
        let detail = if detail.is_empty() { String::new() } else { format!(": {}", detail.join(", ")) };
        writeln!(out, "<g class=\"bucket\" data-from=\"{from}\" data-to=\"{to}\" data-count=\"{total}\"><title>{from}–{to} days: {total} keys{detail}</title>").ok();
        let mut below = 0;
        for (result, count) in RESULTS.iter().zip(counts) {
            if *count == 0 {
                continue;
            }
            let (y, y_below) = (y_of(below + count), y_of(below));
            writeln!(out, "<rect class=\"{}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\"/>", class(*result), slot * 0.85, y_below - y).ok();
            below += count;
        }
        out.push_str("</g>\n");
    }
    // Age labels at bucket starts, few enough not to overlap.
    let every = n.div_ceil(12);
    for i in (0..=n).step_by(every) {
        let x = left + slot * i as f64;
        writeln!(out, "<text class=\"tick\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>", top + plot_h + 16.0, i as i64 * h.width).ok();
    }
    writeln!(out, "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">age in days</text>", left + plot_w / 2.0, height - 6.0).ok();
    // The max age at its exact place (36h is 1.5 days).
    let span_days = (n as f64) * h.width as f64;
    let max_days = report.max_age.as_secs() as f64 / 86_400.0;
    let x = left + plot_w * (max_days / span_days).min(1.0);
    let (anchor, dx) = if x > left + plot_w * 0.8 { ("end", -4.0) } else { ("start", 4.0) };
    writeln!(
        out,
        "<line id=\"max-age-line\" data-days=\"{}\" x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\"/>\
         <text class=\"max-age\" x=\"{:.1}\" y=\"{}\" text-anchor=\"{anchor}\">max age {}</text>",
        report.max_age_days,
        top - 12.0,
        top + plot_h,
        x + dx,
        top - 16.0,
        esc(&max_age_text(report))
    )
    .ok();
    out.push_str("</svg>\n<p class=\"legend\">");
    for result in RESULTS {
        write!(out, "<span class=\"swatch {}\"></span>{} ", class(result), result.as_str()).ok();
    }
    out.push_str("</p>\n</section>\n");
}

/// Worst first (FAILED, WARNING, SUPPRESSED, PASSED), then oldest first;
/// ties in a stable order so two scans of the same keys read the same.
fn sorted(keys: &[KeyRow]) -> Vec<&KeyRow> {
    let mut rows: Vec<&KeyRow> = keys.iter().collect();
    rows.sort_by(|a, b| {
        (a.result, -a.age_days, a.created_at, &a.account_id, &a.user_name, &a.access_key_id)
            .cmp(&(b.result, -b.age_days, b.created_at, &b.account_id, &b.user_name, &b.access_key_id))
    });
    rows
}

fn keys(out: &mut String, report: &ScanReport) {
    out.push_str("<section>\n<h2>Keys</h2>\n");
    filters(out, report);
    out.push_str(
        "<noscript><p class=\"none\">The filters need JavaScript; every key is listed.</p></noscript>\n\
         <div class=\"scroll\"><table id=\"keys\">\n<thead><tr><th>Account</th><th>User</th><th>Access key</th><th>Status</th>\
         <th class=\"num\">Age (days)</th><th>Last used</th><th>Owner</th><th>Result</th><th>Reason</th><th>Exemption</th>\
         <th>Rotation</th><th>Role candidate</th></tr></thead>\n<tbody>\n",
    );
    if report.keys.is_empty() {
        out.push_str("<tr><td colspan=\"12\">No access keys.</td></tr>\n");
    }
    for row in sorted(&report.keys) {
        key_row(out, row);
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

fn key_row(out: &mut String, row: &KeyRow) {
    let (account, user) = (esc(&row.account_id), esc(&row.user_name));
    let owner = row.owner.as_deref().map(esc).unwrap_or_default();
    let class = class(row.result);
    let result = row.result.as_str();
    write!(
        out,
        "<tr class=\"key {class}\" data-account=\"{account}\" data-user=\"{user}\" data-owner=\"{owner}\" data-result=\"{result}\" \
         data-status=\"{}\" data-age=\"{}\">",
        row.status.as_str(),
        row.age_days
    )
    .ok();
    let key = row.access_key_id.as_deref().map_or_else(|| "<span class=\"sub\">not known</span>".to_owned(), |k| format!("<code>{}</code>", esc(k)));
    write!(out, "<td>{account}</td><td title=\"{}\">{user}</td><td>{key}</td><td>{}</td>", esc(&row.user_arn), row.status.as_str()).ok();
    write!(out, "<td class=\"num\" title=\"created {}\">{}</td>", row.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"), row.age_days).ok();
    let last_used = match row.last_used_at {
        None => "never".to_owned(),
        Some(at) => {
            let place: Vec<String> = [&row.last_used_service, &row.last_used_region].into_iter().flatten().map(|s| esc(s)).collect();
            let place = if place.is_empty() { String::new() } else { format!("<br><span class=\"sub\">{}</span>", place.join(" · ")) };
            format!("{}{place}", at.strftime("%Y-%m-%d"))
        }
    };
    let owner_cell = if owner.is_empty() { "<span class=\"sub\">none</span>".to_owned() } else { owner.clone() };
    write!(
        out,
        "<td class=\"last-used\">{last_used}</td><td class=\"owner\">{owner_cell}</td><td class=\"result\">{result}</td><td class=\"reason\">{}</td>",
        esc(&row.reason)
    )
    .ok();
    let exemption = row.exemption.as_ref().map_or_else(String::new, |e| {
        let until = e.until.map_or_else(|| "no end date".to_owned(), |t| format!("until {}", t.strftime("%Y-%m-%d")));
        format!("{}<br><span class=\"sub\">{until}, by {}</span>", esc(&e.reason), esc(&e.by()))
    });
    let rotation = row.rotation.as_ref().map_or_else(String::new, |r| format!("{}<br><span class=\"sub\">{}{}</span>", esc(&r.id), if r.retirement { "retirement, " } else { "" }, esc(&r.stage)));
    let role = match (row.retire, row.role_candidate) {
        (true, _) => "<td title=\"unused for [policy] unused_after: retire it (rekey retire) rather than rotate it\">retire</td>",
        (false, true) => "<td title=\"never used: whatever needs access could use a role instead\">yes</td>",
        (false, false) => "<td>no</td>",
    };
    writeln!(out, "<td>{exemption}</td><td>{rotation}</td>{}</tr>", plan_cell(row).unwrap_or_else(|| role.to_owned())).ok();
}

/// A role candidate whose consumers were read (`--consumers`), all inside
/// AWS: why, how many, and the command of its role plan.
fn plan_cell(row: &KeyRow) -> Option<String> {
    let (Some(reason), Some(consumers)) = (&row.role_reason, &row.consumers) else { return None };
    let hint = crate::role_plan::hint(consumers.count, &row.user_name, &row.account_id);
    row.role_candidate.then(|| format!("<td title=\"{}\">yes<br><span class=\"sub\">{}</span></td>", esc(reason), esc(&hint)))
}

/// The filter bar, hidden until the script shows it: without JavaScript
/// it could do nothing.
fn filters(out: &mut String, report: &ScanReport) {
    let mut accounts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut owners: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &report.keys {
        *accounts.entry(&row.account_id).or_default() += 1;
        *owners.entry(row.owner.as_deref().unwrap_or("")).or_default() += 1;
    }
    out.push_str("<div id=\"filters\" hidden>\n");
    let account_options: Vec<(String, String)> = accounts.iter().map(|(a, n)| (format!("={}", esc(a)), format!("{} ({n})", esc(a)))).collect();
    select(out, "account", "all accounts", &account_options);
    let owner_options: Vec<(String, String)> = owners
        .iter()
        .map(|(o, n)| {
            let label = if o.is_empty() { "(no owner)".to_owned() } else { esc(o) };
            (format!("={}", esc(o)), format!("{label} ({n})"))
        })
        .collect();
    select(out, "owner", "all owners", &owner_options);
    let s = &report.summary;
    let counts = [s.failed, s.warning, s.suppressed, s.passed];
    let result_options: Vec<(String, String)> =
        RESULTS.iter().zip(counts).map(|(r, n)| (format!("={}", r.as_str()), format!("{} ({n})", r.as_str()))).collect();
    select(out, "result", "all results", &result_options);
    write!(out, "<p id=\"shown\">Showing <span id=\"shown-keys\">{}</span> of {} keys:", s.keys, s.keys).ok();
    for (result, n) in RESULTS.iter().zip(counts) {
        write!(out, " <span id=\"shown-{}\">{n}</span> {},", class(*result), result.as_str()).ok();
    }
    out.pop();
    out.push_str("</p>\n</div>\n");
}

/// A filter: `options` are (value, label), both escaped already.
fn select(out: &mut String, name: &str, all: &str, options: &[(String, String)]) {
    write!(out, "<label>{} <select id=\"filter-{name}\"><option value=\"\">{all}</option>", capitalised(name)).ok();
    for (value, label) in options {
        write!(out, "<option value=\"{value}\">{label}</option>").ok();
    }
    out.push_str("</select></label>\n");
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

const STYLE: &str = concat!("<style>", include_str!("html/report.css"), "</style>\n");

/// The filters. A constant: it reads the rows' `data-` attributes and the
/// URL fragment, nothing else. The page's CSP runs it only if
/// [`SCRIPT_SHA256`] is its hash: after changing it, update that with
/// `openssl dgst -sha256 -binary src/html/filters.js | base64` (the
/// Chromium test fails otherwise, the filters never showing).
const SCRIPT: &str = include_str!("html/filters.js");

/// The CSP hash of [`SCRIPT`]: `'sha256-'` and base64.
const SCRIPT_SHA256: &str = "sha256-iV0iedjcQmMpacJsXXLA4+GErodMQm9r0CXyVUwAZ9U=";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::KeyStatus;
    use crate::report::{Exemption, ExemptionSource, Summary};
    use crate::Duration;

    const AS_OF: &str = "2026-11-28T12:00:00Z";
    const HOSTILE: &str = "<script>alert(1)</script>\"'&";
    const HOSTILE_ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;";

    fn row(account: &str, user: &str, owner: Option<&str>, result: Compliance, age_days: i64) -> KeyRow {
        let as_of: Timestamp = AS_OF.parse().unwrap();
        KeyRow {
            account_id: account.into(),
            user_name: user.into(),
            user_arn: format!("arn:aws:iam::{account}:user/{user}"),
            access_key_id: Some(format!("AKIA{user}")),
            status: KeyStatus::Active,
            created_at: as_of - jiff::SignedDuration::from_hours(24 * age_days),
            age_days,
            last_used_at: None,
            last_used_service: None,
            last_used_region: None,
            owner: owner.map(str::to_owned),
            result,
            reason: format!("active key is {age_days} days old (limit 90)"),
            exemption: None,
            rotation: None,
            role_candidate: true,
            retire: false,
            role_reason: None,
            consumers: None,
        }
    }

    fn report(keys: Vec<KeyRow>) -> ScanReport {
        let as_of: Timestamp = AS_OF.parse().unwrap();
        ScanReport {
            generated_at: as_of,
            as_of,
            max_age_days: 90,
            max_age: Duration::from_days(90),
            source: "credential-report",
            report_generated_at: Some(as_of),
            summary: Summary::of(keys.len(), &keys),
            accounts: Vec::new(),
            errors: Vec::new(),
            warnings: Vec::new(),
            other_findings: Vec::new(),
            keys,
        }
    }

    fn note(account: Option<&str>, user: Option<&str>, message: &str) -> Note {
        Note { account_id: account.map(str::to_owned), user_name: user.map(str::to_owned), message: message.into(), ..Note::default() }
    }

    /// The text of the element with `id`, up to the next tag.
    fn text_of<'a>(html: &'a str, id: &str) -> &'a str {
        let start = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
        let text = &html[start..];
        let text = &text[text.find('>').unwrap() + 1..];
        &text[..text.find('<').unwrap()]
    }

    /// The `data-user` of every key row, in page order.
    fn users_in_order(html: &str) -> Vec<&str> {
        html.split("<tr class=\"key ")
            .skip(1)
            .map(|r| {
                let r = &r[r.find("data-user=\"").unwrap() + 11..];
                &r[..r.find('"').unwrap()]
            })
            .collect()
    }

    #[test]
    fn outside_values_are_escaped_in_text_and_attributes() {
        let mut key = row(HOSTILE, HOSTILE, Some(HOSTILE), Compliance::Suppressed, 100);
        key.reason = HOSTILE.into();
        key.last_used_at = Some(AS_OF.parse().unwrap());
        key.last_used_service = Some(HOSTILE.into());
        key.exemption = Some(Box::new(Exemption { source: ExemptionSource::Recorded { by: HOSTILE.into() }, reason: HOSTILE.into(), until: None }));
        let mut r = report(vec![key]);
        r.errors.push(note(Some(HOSTILE), Some(HOSTILE), HOSTILE));
        r.warnings.push(note(None, Some(HOSTILE), HOSTILE));
        let html = render(&r);
        assert_eq!(html.matches("<script").count(), 1, "only the page's own script");
        assert!(!html.contains("alert(1)</script>"), "{html}");
        assert!(!html.contains("\"'&"), "{html}");
        for attr in ["data-account", "data-user", "data-owner"] {
            assert!(html.contains(&format!("{attr}=\"{HOSTILE_ESCAPED}\"")), "{attr} in {html}");
        }
        assert!(html.contains(&format!("title=\"arn:aws:iam::{HOSTILE_ESCAPED}:user/{HOSTILE_ESCAPED}\"")));
        assert!(html.contains(&format!("<option value=\"={HOSTILE_ESCAPED}\">{HOSTILE_ESCAPED} (1)</option>")));
        assert!(html.contains(&format!("<td class=\"reason\">{HOSTILE_ESCAPED}</td>")));
        assert!(html.contains(&format!("{HOSTILE_ESCAPED}<br><span class=\"sub\">no end date, by {HOSTILE_ESCAPED}</span>")));
        assert!(html.contains(&format!("<span class=\"where\">account {HOSTILE_ESCAPED}, user {HOSTILE_ESCAPED}</span>: {HOSTILE_ESCAPED}</li>")));
        assert!(html.contains(&format!("<tr data-account=\"{HOSTILE_ESCAPED}\"><th scope=\"row\">{HOSTILE_ESCAPED}</th>")));
    }

    #[test]
    fn the_page_fetches_nothing_and_runs_only_its_script() {
        let html = render(&report(vec![row("123456789012", "u", None, Compliance::Failed, 100)]));
        assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
        for external in ["src=", "href=", "url(", "@import", "<link", "<img", "http:", "https:", "<iframe", "on"] {
            let found = if external == "on" { html.contains(" onclick=") || html.contains(" onload=") } else { html.contains(external) };
            assert!(!found, "{external} in the page");
        }
        assert!(html.contains(&format!("script-src '{SCRIPT_SHA256}'")));
        assert!(html.contains("default-src 'none'"));
        assert!(html.contains(&format!("<script>{SCRIPT}</script>")), "the script exactly as hashed");
        assert!(!SCRIPT.contains("</"), "nothing in the script closes its element");
        assert!(html.contains("<div id=\"filters\" hidden>"), "no filters until the script runs");
    }

    #[test]
    fn an_empty_report_says_so() {
        let html = render(&report(Vec::new()));
        for id in ["total-failed", "total-warning", "total-suppressed", "total-passed", "total-keys", "total-users", "total-users-failed"] {
            assert_eq!(text_of(&html, id), "0", "{id}");
        }
        assert_eq!(text_of(&html, "shown-keys"), "0");
        assert!(html.contains("No access keys.") && html.contains("No keys.") && html.contains("No accounts"));
        assert!(!html.contains("<tr class=\"key") && !html.contains("id=\"histogram\""));
        assert!(html.contains("None: every user's keys were read."));
        assert!(html.ends_with("</html>\n"));
    }

    #[test]
    fn header_and_totals() {
        let keys = vec![
            row("111111111111", "a", Some("team-a"), Compliance::Failed, 120),
            row("111111111111", "a", Some("team-a"), Compliance::Warning, 80),
            row("111111111111", "b", None, Compliance::Passed, 5),
        ];
        let mut r = report(keys);
        r.max_age = Duration::from_secs(36 * 3600);
        r.max_age_days = 1;
        r.report_generated_at = None;
        let html = render(&r);
        assert!(html.contains("<dd id=\"as-of\"><time datetime=\"2026-11-28T12:00:00Z\">2026-11-28 12:00:00 UTC</time></dd>"));
        assert_eq!(text_of(&html, "max-age"), "36h");
        assert_eq!(text_of(&html, "report-generated-at"), "none: keys read from the IAM API");
        let totals: Vec<_> = ["failed", "warning", "suppressed", "passed", "keys", "users", "users-failed", "users-warning"]
            .iter()
            .map(|id| text_of(&html, &format!("total-{id}")))
            .collect();
        assert_eq!(totals, ["1", "1", "0", "1", "3", "3", "1", "0"]);
        assert!(html.contains("<title>rekey scan: 1 FAILED, 1 WARNING of 3 keys, as of 2026-11-28</title>"));
    }

    #[test]
    fn keys_are_listed_worst_first_then_oldest() {
        let keys = vec![
            row("1", "passed-old", None, Compliance::Passed, 300),
            row("1", "warning", None, Compliance::Warning, 80),
            row("1", "failed-young", None, Compliance::Failed, 91),
            row("2", "suppressed", None, Compliance::Suppressed, 400),
            row("1", "failed-old", None, Compliance::Failed, 500),
        ];
        let html = render(&report(keys));
        assert_eq!(users_in_order(&html), ["failed-old", "failed-young", "warning", "suppressed", "passed-old"]);
        assert!(html.contains(
            "<tr class=\"key failed\" data-account=\"1\" data-user=\"failed-old\" data-owner=\"\" data-result=\"FAILED\" data-status=\"Active\" data-age=\"500\">"
        ));
    }

    #[test]
    fn totals_per_account_count_keys_by_result_and_errors() {
        let keys = vec![
            row("222222222222", "a", None, Compliance::Failed, 100),
            row("111111111111", "b", None, Compliance::Passed, 10),
            row("222222222222", "c", None, Compliance::Warning, 80),
            row("222222222222", "d", None, Compliance::Failed, 95),
            row("111111111111", "e", None, Compliance::Suppressed, 200),
        ];
        let mut r = report(keys);
        r.errors.push(note(Some("333333333333"), None, "AccessDenied: cannot list users"));
        r.errors.push(note(Some("222222222222"), Some("x"), "cannot read keys"));
        r.errors.push(note(None, None, "an error of no account"));
        r.warnings.push(note(Some("444444444444"), None, "owners unreadable"));
        let totals = account_totals(&r);
        let expected = [
            ("111111111111", AccountTotals { keys: 2, results: [0, 0, 1, 1], errors: 0 }),
            ("222222222222", AccountTotals { keys: 3, results: [2, 1, 0, 0], errors: 1 }),
            ("333333333333", AccountTotals { keys: 0, results: [0; 4], errors: 1 }),
            ("444444444444", AccountTotals::default()),
        ];
        assert_eq!(totals.into_iter().collect::<Vec<_>>(), expected);
        let html = render(&r);
        assert!(html.contains(
            "<tr data-account=\"222222222222\"><th scope=\"row\">222222222222</th><td class=\"num\" data-col=\"keys\">3</td>\
             <td class=\"num\" data-col=\"failed\">2</td><td class=\"num\" data-col=\"warning\">1</td>\
             <td class=\"num\" data-col=\"suppressed\">0</td><td class=\"num\" data-col=\"passed\">0</td>\
             <td class=\"num\" data-col=\"errors\">1</td></tr>"
        ), "{html}");
        assert!(html.contains("<h2>Errors (3)</h2>") && html.contains("<li data-account=\"\" data-user=\"\">an error of no account</li>"));
        assert!(html.contains("<option value=\"=222222222222\">222222222222 (3)</option>"));
        assert!(html.contains("<option value=\"=\">(no owner) (5)</option>"));
    }

    #[test]
    fn histogram_buckets_of_30_days_reach_the_oldest_key_and_the_max_age() {
        let ages = [(0, Compliance::Passed), (29, Compliance::Passed), (30, Compliance::Passed), (89, Compliance::Warning), (90, Compliance::Failed), (95, Compliance::Failed), (200, Compliance::Passed)];
        let keys: Vec<_> = ages.iter().map(|(age, result)| row("1", "u", None, *result, *age)).collect();
        let h = histogram_of(&keys, 90);
        assert_eq!(h.width, 30);
        assert_eq!(h.buckets, [[0, 0, 0, 2], [0, 0, 0, 1], [0, 1, 0, 0], [2, 0, 0, 0], [0; 4], [0; 4], [0, 0, 0, 1]]);
        // Only young keys: the chart still reaches the max age.
        assert_eq!(histogram_of(&keys[..1], 90).buckets.len(), 4);
        assert_eq!(histogram_of(&[], 90), Histogram { width: 30, buckets: vec![[0; 4]; 4] });

        let html = render(&report(keys));
        assert!(html.contains("<g class=\"bucket\" data-from=\"90\" data-to=\"119\" data-count=\"2\"><title>90–119 days: 2 keys: 2 FAILED</title>"));
        assert!(html.contains("id=\"max-age-line\" data-days=\"90\""));
        assert_eq!(html.matches("<g class=\"bucket\"").count(), 7);
    }

    #[test]
    fn a_role_candidate_with_consumers_shows_how_many_and_the_plan_command() {
        let mut key = row("123456789012", "app&co", None, Compliance::Failed, 100);
        key.role_reason = Some("used only from Lambda: an execution role removes the need for this key".into());
        key.consumers = Some(Box::new(crate::report::ConsumerCount { count: 2, latest: None, all: Vec::new() }));
        let html = render(&report(vec![key, row("123456789012", "plain", None, Compliance::Failed, 100)]));
        assert!(html.contains("<td title=\"used only from Lambda: an execution role removes the need for this key\">yes<br><span class=\"sub\">2 consumers, plan: `rekey role-plan --user &#39;app&amp;co&#39; --account 123456789012`</span></td>"), "{html}");
        assert!(html.contains("<td title=\"never used: whatever needs access could use a role instead\">yes</td>"), "without consumers read, as before");
    }

    #[test]
    fn histogram_buckets_widen_by_months_to_stay_few() {
        let keys = vec![row("1", "a", None, Compliance::Failed, 2000), row("1", "b", None, Compliance::Passed, 10)];
        let h = histogram_of(&keys, 90);
        assert_eq!((h.width, h.buckets.len()), (90, 23));
        assert_eq!((h.buckets[0], h.buckets[22]), ([0, 0, 0, 1], [1, 0, 0, 0]));
        // The longest max age there is: still a handful of buckets.
        let longest = Duration::from_days(Duration::MAX.whole_days());
        let h = histogram_of(&keys, longest.whole_days());
        assert!(h.buckets.len() as i64 <= MAX_BUCKETS && h.buckets[0] == [1, 0, 0, 1], "{:?}", h.buckets.len());
        let mut r = report(keys);
        r.max_age = longest;
        r.max_age_days = longest.whole_days();
        assert!(render(&r).contains("max age 2893518 days"));
    }
}
