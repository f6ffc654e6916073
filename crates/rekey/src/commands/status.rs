//! `rekey status [ID]`: rotations, oldest first, with their stage and what
//! each waits for; one rotation in full.

use super::{open_store_to_read, stop};
use crate::cli::{ListFormat, StatusArgs};
use crate::settings::Settings;
use crate::table::{self, Column};
use crate::terminal::Terminal;
use rekey_engine::plan::Progress;
use rekey_engine::runner::Rotation;
use rekey_store::{ListQuery, RotationRecord};
use serde_json::{json, Value};

pub async fn run(args: StatusArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let (store, warning) = open_store_to_read(settings).await?;
    if let Some(warning) = warning {
        term.warn(&warning);
    }
    if let Some(id) = &args.id {
        let rotation = store.get(id).await?;
        match args.format {
            ListFormat::Json => outln!("{}", serde_json::to_string_pretty(&json!({ "rotations": [to_json(&rotation)?] }))?)?,
            // One rotation in full: times, what it waits for, who is left on its old key.
            ListFormat::Table => print_one(&rotation)?,
        }
        return Ok(0);
    }
    let query = ListQuery { all: args.all, since: args.since.map(|s| s.back_from(jiff::Timestamp::now())), limit: args.limit };
    // Streamed: each rotation becomes its JSON line, or its table row, and
    // is dropped: memory does not grow with plans and progress.
    if args.format == ListFormat::Json {
        let mut first = true;
        outln!("{{\"rotations\": [")?;
        store
            .list(&query, &mut |r| {
                let line = serde_json::to_string(&to_json(&r).map_err(stop)?).map_err(stop)?;
                outln!("{}{line}", if std::mem::take(&mut first) { "" } else { "," }).map_err(stop)
            })
            .await?;
        outln!("]}}")?;
        return Ok(0);
    }
    let (mut page, mut shown) = (Vec::new(), 0);
    store
        .list(&query, &mut |r| {
            let v = to_json(&r).map_err(stop)?;
            let note = v["blocked_reason"].as_str().or(v["waiting_for"].as_str()).unwrap_or("").to_owned();
            let keep = ["id", "user_name", "old_key_id", "new_key_id", "stage", "next_check_at"].map(|k| (k.to_owned(), v[k].clone()));
            page.push(Value::Object(keep.into_iter().chain([("note".to_owned(), Value::String(note))]).collect()));
            shown += 1;
            if page.len() == table::PAGE {
                print_table(&std::mem::take(&mut page)).map_err(stop)?;
            }
            Ok(())
        })
        .await?;
    if !page.is_empty() {
        print_table(&page)?;
    }
    if shown == 0 && !args.all {
        outln!("(no unfinished rotations; --all lists finished ones too)")?;
    }
    Ok(0)
}

fn print_table(rows: &[Value]) -> anyhow::Result<()> {
    let cells = |k: &str| rows.iter().map(|v| v[k].as_str().unwrap_or("-").to_owned()).collect::<Vec<_>>();
    let notes = rows.iter().map(|v| v["note"].as_str().unwrap_or("").to_owned()).collect();
    let columns = vec![
        Column::whole("ID", cells("id")),
        Column::whole("USER", cells("user_name")),
        Column::whole("OLD KEY", cells("old_key_id")),
        Column::whole("NEW KEY", cells("new_key_id")),
        Column::whole("STAGE", cells("stage")),
        Column::whole("NEXT CHECK", cells("next_check_at")),
        Column::text("NOTE", notes, 24),
    ];
    // What a rotation waits for matters more than its keys' ids.
    let reductions = ["NEW KEY", "NEXT CHECK", "OLD KEY", "NOTE"];
    outln!("{}", table::render(columns, &reductions, table::width(), false))?;
    Ok(())
}

/// The JSON object of one rotation (SPEC section 5 fields, and progress).
pub fn to_json(r: &RotationRecord) -> anyhow::Result<Value> {
    Ok(json_of(r, &Rotation::decode(r.clone())?.progress))
}

fn json_of(r: &RotationRecord, progress: &Progress) -> Value {
    json!({
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
        "old_key_consumers": progress.consumers,
    })
}

/// One rotation in a few lines, after `rotate`, `confirm` and the like.
pub fn print_one(r: &RotationRecord) -> anyhow::Result<()> {
    let progress = Rotation::decode(r.clone())?.progress;
    let v = json_of(r, &progress);
    outln!("{}: {} of {} -> {}", r.id, r.old_key_id, r.user_name, r.new_key_id.as_deref().unwrap_or("(no new key yet)"))?;
    match r.came_from {
        Some(from) => outln!("  stage: {} (from {from})", r.stage)?,
        None => outln!("  stage: {}", r.stage)?,
    }
    if let Some(reason) = v["blocked_reason"].as_str() {
        outln!("  reason: {reason}")?;
    } else if let Some(waiting) = v["waiting_for"].as_str() {
        outln!("  waiting: {waiting}")?;
    }
    // What CloudTrail showed at the drain's last look: who is left on the old key.
    if let Some(watch) = progress.consumers.filter(|_| r.stage == rekey_core::workflow::Stage::Draining) {
        for c in &watch.left {
            outln!("  still on the old key: {}", c.describe())?;
        }
        for c in &watch.moved {
            outln!("  moved to the new key: {}", c.describe())?;
        }
    }
    if let Some(at) = v["next_check_at"].as_str() {
        outln!("  next check: {at} (`rekey run` picks it up)")?;
    }
    Ok(())
}
