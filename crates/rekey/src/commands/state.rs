//! `rekey state init` and `rekey state migrate`: the DynamoDB table, and
//! moving state between backends without losing an audit event.

use crate::store::open_location;
use crate::cli::{StateCommand, StateInitArgs, StateMigrateArgs};
use crate::settings::{Settings, DEFAULT_TABLE};
use crate::terminal::Terminal;
use rekey_aws::Clients;
use rekey_core::model::whole_seconds;
use rekey_store::{DynamoStore, Location};

pub async fn run(command: StateCommand, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    match command {
        StateCommand::Init(args) => init(args, settings, term).await,
        StateCommand::Migrate(args) => migrate(args, settings, term).await,
    }
}

async fn init(args: StateInitArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let table = match (&args.table, &settings.state) {
        (Some(table), _) => table.clone(),
        (None, Location::Dynamo { table }) => table.clone(),
        (None, Location::Sqlite(_)) => DEFAULT_TABLE.to_owned(),
    };
    if let Err(e) = format!("dynamodb:{table}").parse::<Location>() {
        anyhow::bail!("--table: {e}");
    }
    if args.print {
        outln!("{}", serde_json::to_string_pretty(&DynamoStore::cloudformation(&table))?)?;
        return Ok(0);
    }
    let clients = Clients::new(&settings.aws).await;
    let described = DynamoStore::new(clients.dynamodb(), &table).create_table().await?;
    let what = if described.created { "created" } else { "exists and has rekey's keys and indexes" };
    outln!("{table}: {what}, with point-in-time recovery and TTL ({})", described.arn)?;
    if matches!(settings.state, Location::Sqlite(_)) {
        term.info(&format!("to use it, set [state] backend = \"dynamodb\" and table = \"{table}\" in rekey.toml (or --state dynamodb:{table}); `rekey state migrate` copies what the SQLite file holds"));
    }
    term.report_calls(clients.calls());
    Ok(0)
}

async fn migrate(args: StateMigrateArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    if args.from == args.to {
        anyhow::bail!("--from and --to are the same store ({})", args.from);
    }
    if let Location::Sqlite(path) = &args.from {
        // Opening would create an empty file: a typo must not migrate nothing.
        if !path.is_file() {
            anyhow::bail!("--from {}: no such file", args.from);
        }
    }
    let from = open_location(&args.from, settings).await?;
    // Before the target is opened (and a SQLite file created for nothing).
    rekey_store::refuse_if_migrated(&*from).await?;
    let to = open_location(&args.to, settings).await?;
    let to_name = absolute(&args.to)?;
    let copied = rekey_store::migrate(&*from, &*to, &to_name, whole_seconds(jiff::Timestamp::now()), &settings.actor).await?;
    let counts: Vec<String> = copied.counts.iter().map(|(kind, n)| format!("{n} {kind}")).collect();
    outln!("copied {} from {} to {to_name}", if counts.is_empty() { "nothing".to_owned() } else { counts.join(", ") }, args.from)?;
    outln!("verified: the same items and checksum on both sides (sha256 {})", copied.checksum)?;
    outln!("{} is marked as migrated to {to_name}: it can still be read, and refuses to run rotations", args.from)?;
    term.info(&format!("point [state] in rekey.toml (or --state) at {to_name}"));
    Ok(0)
}

/// The target as `--state` takes it, from any directory: a SQLite path
/// made absolute (the file exists once opened).
fn absolute(location: &Location) -> anyhow::Result<String> {
    Ok(match location {
        Location::Sqlite(path) => Location::Sqlite(std::fs::canonicalize(path).map_err(|e| anyhow::anyhow!("--to {location}: {e}"))?).to_string(),
        Location::Dynamo { .. } => location.to_string(),
    })
}
