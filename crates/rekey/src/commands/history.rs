//! `rekey history [ID]`: the audit log, oldest first.

use crate::store::{open_store_to_read, stop};
use crate::cli::{HistoryArgs, ListFormat};
use crate::settings::Settings;
use crate::table::{self, Column};
use crate::terminal::Terminal;
use rekey_store::{AuditEntry, HistoryQuery};
use serde_json::{json, Value};

pub async fn run(args: HistoryArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let (store, warning) = open_store_to_read(settings).await?;
    if let Some(warning) = warning {
        term.warn(&warning);
    }
    if let Some(id) = &args.id {
        store.get(id).await?;
    }
    let query = HistoryQuery { rotation_id: args.id.clone(), since: args.since.map(|s| s.back_from(jiff::Timestamp::now())), limit: args.limit };
    if args.format == ListFormat::Json {
        let mut first = true;
        outln!("{{\"events\": [")?;
        store
            .history(&query, &mut |e| {
                let line = json!({
                    "at": e.at.to_string(), "actor": e.actor, "rotation_id": e.rotation_id, "event": e.event,
                    "from_stage": e.from_stage.map(|s| s.as_str()), "to_stage": e.to_stage.map(|s| s.as_str()),
                    "aws_request_id": e.aws_request_id, "detail": e.detail,
                });
                outln!("{}{line}", if std::mem::take(&mut first) { "" } else { "," }).map_err(stop)
            })
            .await?;
        outln!("]}}")?;
        return Ok(0);
    }
    let mut page = Vec::new();
    store
        .history(&query, &mut |e| {
            page.push(e);
            if page.len() == table::PAGE {
                print_table(&std::mem::take(&mut page), args.id.is_some()).map_err(stop)?;
            }
            Ok(())
        })
        .await?;
    if !page.is_empty() {
        print_table(&page, args.id.is_some())?;
    }
    Ok(0)
}

fn print_table(events: &[AuditEntry], one_rotation: bool) -> anyhow::Result<()> {
    let cells = |f: &dyn Fn(&AuditEntry) -> String| events.iter().map(f).collect::<Vec<_>>();
    let stage = |e: &AuditEntry| match (e.from_stage, e.to_stage) {
        (Some(from), Some(to)) => format!("{from} -> {to}"),
        (None, Some(to)) => to.to_string(),
        _ => String::new(),
    };
    let mut columns = vec![
        Column::whole("TIME", cells(&|e| e.at.to_string())),
        Column::whole("ROTATION", cells(&|e| e.rotation_id.clone().unwrap_or_default())),
        Column::whole("EVENT", cells(&|e| e.event.clone())),
        Column::whole("STAGE", cells(&stage)).or_shorter(cells(&|e| e.to_stage.map(|s| s.to_string()).unwrap_or_default())),
        Column::text("DETAIL", cells(&|e| detail_text(&e.detail)), 28),
        Column::whole("ACTOR", cells(&|e| e.actor.clone())),
        Column::whole("REQUEST ID", cells(&|e| e.aws_request_id.clone().unwrap_or_default())),
    ];
    if one_rotation {
        columns.remove(1); // one rotation: its id on every line says nothing
    }
    // A `stage_*` event names its stage; the detail holds what only it says.
    let reductions = ["REQUEST ID", "ACTOR", "STAGE", "STAGE", "DETAIL", "ROTATION"];
    outln!("{}", table::render(columns, &reductions, table::width(), false))?;
    Ok(())
}

/// An event's detail for people: `key: value` pairs without the JSON
/// punctuation, unknown (null) values left out. `--format json` has it all.
fn detail_text(detail: &Value) -> String {
    fn value(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items.iter().map(value).collect::<Vec<_>>().join("; "),
            other => other.to_string(),
        }
    }
    match detail {
        Value::Object(fields) => fields.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| format!("{k}: {}", value(v))).collect::<Vec<_>>().join(", "),
        Value::Null => String::new(),
        other => value(other),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn detail_reads_as_text() {
        let d = serde_json::json!({"key": "AKIA1", "reason": null, "verify": ["sts", "exec"], "already_there": false});
        assert_eq!(super::detail_text(&d), "already_there: false, key: AKIA1, verify: sts; exec");
    }
}
