//! `rekey history [ID]`: the audit log, oldest first.

use super::open_store;
use crate::cli::{HistoryArgs, ListFormat};
use crate::settings::Settings;
use comfy_table::{presets, Table};
use serde_json::json;

pub fn run(args: HistoryArgs, settings: &Settings) -> anyhow::Result<u8> {
    let store = open_store(settings)?;
    if let Some(id) = &args.id {
        store.get(id)?;
    }
    let events = store.history(args.id.as_deref())?;
    match args.format {
        ListFormat::Json => {
            let items: Vec<_> = events
                .iter()
                .map(|e| {
                    json!({
                        "at": e.at.to_string(), "actor": e.actor, "rotation_id": e.rotation_id, "event": e.event,
                        "from_stage": e.from_stage.map(|s| s.as_str()), "to_stage": e.to_stage.map(|s| s.as_str()),
                        "aws_request_id": e.aws_request_id, "detail": e.detail,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&json!({ "events": items }))?);
        }
        ListFormat::Table => {
            let mut t = Table::new();
            t.load_style(presets::NOTHING);
            t.set_header(["TIME", "ROTATION", "ACTOR", "EVENT", "STAGE", "REQUEST ID", "DETAIL"]);
            for e in &events {
                let stage = match (e.from_stage, e.to_stage) {
                    (Some(f), Some(to)) => format!("{f} -> {to}"),
                    (None, Some(to)) => to.to_string(),
                    _ => String::new(),
                };
                t.add_row([
                    e.at.to_string(),
                    e.rotation_id.clone().unwrap_or_default(),
                    e.actor.clone(),
                    e.event.clone(),
                    stage,
                    e.aws_request_id.clone().unwrap_or_default(),
                    e.detail.to_string(),
                ]);
            }
            println!("{}", t.trim_fmt());
        }
    }
    Ok(0)
}
