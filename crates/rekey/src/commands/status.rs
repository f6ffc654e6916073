//! `rekey status [ID]`: rotations, oldest first, with their stage and what
//! each waits for; one rotation in full.

use crate::store::{open_store_to_read, stop};
use crate::cli::{ListFormat, StatusArgs};
use crate::rotations::{print_one, to_json};
use crate::settings::Settings;
use crate::table::{self, Column};
use crate::terminal::Terminal;
use rekey_engine::runner::View;
use rekey_store::ListQuery;
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
            let view = View::of(&r).map_err(stop)?;
            let note = view.note().unwrap_or("").to_owned();
            let v = serde_json::to_value(&view).map_err(stop)?;
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
