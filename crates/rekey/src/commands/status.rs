//! `rekey status [ID]`: rotations, oldest first, with their stage and what
//! each waits for.

use super::open_store;
use crate::cli::{ListFormat, StatusArgs};
use crate::settings::Settings;
use comfy_table::{presets, Table};
use rekey_engine::runner::Rotation;
use rekey_store::RotationRecord;
use serde_json::{json, Value};

pub fn run(args: StatusArgs, settings: &Settings) -> anyhow::Result<u8> {
    let store = open_store(settings)?;
    let rotations = match &args.id {
        Some(id) => vec![store.get(id)?],
        None => store.list()?,
    };
    match args.format {
        ListFormat::Json => {
            let items: Vec<Value> = rotations.iter().map(to_json).collect::<anyhow::Result<_>>()?;
            println!("{}", serde_json::to_string_pretty(&json!({ "rotations": items }))?);
        }
        ListFormat::Table => {
            let mut t = Table::new();
            t.load_style(presets::NOTHING);
            t.set_header(["ID", "USER", "OLD KEY", "NEW KEY", "STAGE", "NEXT CHECK", "NOTE"]);
            for r in &rotations {
                let v = to_json(r)?;
                let text = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
                let note = v["blocked_reason"].as_str().or(v["waiting_for"].as_str()).unwrap_or("").to_owned();
                t.add_row([text("id"), text("user_name"), text("old_key_id"), text("new_key_id"), text("stage"), text("next_check_at"), note]);
            }
            println!("{}", t.trim_fmt());
        }
    }
    Ok(0)
}

/// The JSON object of one rotation (SPEC section 5 fields, and progress).
pub fn to_json(r: &RotationRecord) -> anyhow::Result<Value> {
    let progress = Rotation::decode(r.clone())?.progress;
    Ok(json!({
        "id": r.id,
        "account_id": r.account_id,
        "user_name": r.user_name,
        "old_key_id": r.old_key_id,
        "new_key_id": r.new_key_id,
        "stage": r.stage.as_str(),
        "came_from": r.came_from.map(|s| s.as_str()),
        "next_check_at": if r.stage.is_working() { r.next_check_at.map(|t| t.to_string()) } else { None },
        "blocked_reason": r.blocked_reason,
        "waiting_for": progress.waiting_for,
        "started_at": r.started_at.to_string(),
        "updated_at": r.updated_at.to_string(),
        "delivered_at": progress.delivered_at.map(|t| t.to_string()),
        "deactivated_at": progress.deactivated_at.map(|t| t.to_string()),
        "drain_restarted_at": progress.drain_from.map(|t| t.to_string()),
        "old_key_used_after_delivery": progress.used_after_delivery,
    }))
}

/// One rotation in a few lines, after `rotate`, `confirm` and the like.
pub fn print_one(r: &RotationRecord) -> anyhow::Result<()> {
    let v = to_json(r)?;
    println!("{}: {} of {} -> {}", r.id, r.old_key_id, r.user_name, r.new_key_id.as_deref().unwrap_or("(no new key yet)"));
    match r.came_from {
        Some(from) => println!("  stage: {} (from {from})", r.stage),
        None => println!("  stage: {}", r.stage),
    }
    if let Some(reason) = v["blocked_reason"].as_str() {
        println!("  reason: {reason}");
    } else if let Some(waiting) = v["waiting_for"].as_str() {
        println!("  waiting: {waiting}");
    }
    if let Some(at) = v["next_check_at"].as_str() {
        println!("  next check: {at} (`rekey run` picks it up)");
    }
    Ok(())
}
