//! `rekey rotate`: checks everything it can without changing AWS (user, key,
//! sinks, verifiers), then records the rotation and advances it as far as it
//! can go now. Bad input changes nothing, in AWS or in the state store.

use super::open_store;
use crate::cli::RotateArgs;
use crate::commands::status::print_one;
use crate::settings::Settings;
use crate::terminal::Terminal;
use anyhow::{anyhow, bail, Context};
use rekey_aws::{Clients, Iam};
use rekey_core::target::{Sink, Verifier};
use rekey_core::workflow::Stage;
use rekey_core::{AccessKeyId, AccountId, KeyStatus};
use rekey_engine::plan::{Plan, Progress};
use rekey_engine::runner::{now, Engine};
use rekey_engine::{sinks, verify};
use rekey_store::{AuditEntry, RotationRecord};
use std::io::{BufRead, IsTerminal, Write};

pub async fn run(args: RotateArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let plan = plan(&args, settings)?;
    let clients = Clients::new(&settings.aws).await;
    let iam = Iam::new(&clients);

    let user = iam.get_user(&args.user).await?.ok_or_else(|| anyhow!("there is no IAM user named \"{}\"", args.user))?;
    let account = AccountId::from_arn(&user.arn).ok_or_else(|| anyhow!("user {} has a malformed ARN {}", args.user, user.arn))?;
    if let Some(wanted) = &args.account {
        if wanted != &account {
            bail!("user {} is in account {account}, not {wanted}: the credentials reach account {account}", args.user);
        }
    }
    let keys = iam.list_access_keys(&args.user).await?;
    let old = match &args.key {
        Some(id) => keys
            .iter()
            .find(|k| k.id.as_str() == id)
            .ok_or_else(|| anyhow!("user {} has no access key {id}", args.user))?,
        None => keys
            .iter()
            .filter(|k| k.status == KeyStatus::Active)
            .min_by_key(|k| k.created_at)
            .ok_or_else(|| anyhow!("user {} has no active access key to rotate", args.user))?,
    };
    if old.status == KeyStatus::Inactive {
        bail!("key {} is inactive: it already passes IAM.3; delete it rather than rotate it", old.id);
    }
    let may_reveal = args.reveal || term.stdout_is_terminal;
    let id = new_rotation_id();
    for (index, sink) in plan.deliver.iter().enumerate() {
        let ctx = sinks::SinkCtx {
            clients: &clients,
            user: args.user.clone(),
            account: account.clone(),
            timeout: plan.timings.verify_timeout.to_signed().unsigned_abs(),
            may_reveal,
            rotation_id: &id,
            index,
        };
        let sink = sinks::of(sink);
        sink.check(&ctx).await.with_context(|| format!("cannot deliver to {}", sink.describe()))?;
    }
    for verifier in &plan.verify {
        verify::check(verifier).map_err(|e| anyhow!("{e}"))?;
    }

    if args.dry_run {
        print_plan(&args, &account, &old.id, &plan);
        return Ok(0);
    }
    if !args.yes {
        confirm_on_terminal(&format!("Rotate key {} of {} ({account})?", old.id, args.user))?;
    }

    let mut store = open_store(settings)?;
    let started = now();
    let record = RotationRecord {
        id,
        account_id: account.to_string(),
        user_name: args.user.to_string(),
        old_key_id: old.id.to_string(),
        new_key_id: None,
        stage: Stage::Planned,
        blocked_reason: None,
        plan: serde_json::to_value(&plan)?,
        progress: serde_json::to_value(Progress::default())?,
        started_at: started,
        updated_at: started,
        next_check_at: None,
    };
    let audit = AuditEntry {
        at: started,
        actor: settings.actor.clone(),
        rotation_id: Some(record.id.clone()),
        event: "rotation_started".into(),
        from_stage: None,
        to_stage: Some(Stage::Planned),
        aws_request_id: None,
        detail: serde_json::json!({
            "deliver": plan.deliver.iter().map(|s| sinks::of(s).describe()).collect::<Vec<_>>(),
            "verify": plan.verify.iter().map(verify::describe).collect::<Vec<_>>(),
        }),
    };
    store.insert(&record, &audit)?;
    let mut engine = Engine::new(&clients, &mut store, settings.actor.clone(), may_reveal);
    engine.know_user_arn(&args.user, &user.arn);
    let advanced = engine.advance(&record.id).await;
    term.report_calls(clients.calls());
    let rotation = store.get(&record.id)?;
    print_one(&rotation)?;
    advanced?;
    Ok(exit_code(rotation.stage))
}

/// A rotation that ended without completing is an error for scripts.
pub fn exit_code(stage: Stage) -> u8 {
    match stage {
        Stage::RolledBack | Stage::Failed => 2,
        _ => 0,
    }
}

/// The target from rekey.toml, with the command line's `--deliver`,
/// `--verify` and timings taking precedence.
fn plan(args: &RotateArgs, settings: &Settings) -> anyhow::Result<Plan> {
    let target = settings
        .file
        .targets
        .iter()
        .find(|t| t.user == args.user && (t.account.is_none() || args.account.is_none() || t.account == args.account));
    let deliver: Vec<Sink> = if args.deliver.is_empty() {
        target.map(|t| t.deliver.clone()).unwrap_or_default()
    } else {
        args.deliver.iter().map(|text| inline("--deliver", text)).collect::<anyhow::Result<_>>()?
    };
    if deliver.is_empty() {
        bail!("no delivery target for {}: add a [[target]] with `deliver` to rekey.toml, or pass --deliver", args.user);
    }
    let mut verify: Vec<Verifier> = if args.verify.is_empty() {
        target.map(|t| t.verify.clone()).unwrap_or_default()
    } else {
        args.verify.iter().map(|text| inline("--verify", text)).collect::<anyhow::Result<_>>()?
    };
    if verify.is_empty() {
        // Never rotate blind: at least prove the new key works.
        verify.push(Verifier::Sts {});
    }
    let mut timings = settings.timings();
    timings.wait_unused = args.wait_unused.unwrap_or(timings.wait_unused);
    timings.grace = args.grace.unwrap_or(timings.grace);
    Ok(Plan { deliver, verify, timings, delete_inactive: args.delete_inactive })
}

/// Parses one `--deliver`/`--verify` value with the config file's rules.
fn inline<T: serde::de::DeserializeOwned>(flag: &str, text: &str) -> anyhow::Result<T> {
    #[derive(serde::Deserialize)]
    struct One<T> {
        v: T,
    }
    toml::from_str::<One<T>>(&format!("v = {text}"))
        .map(|one| one.v)
        .map_err(|e| anyhow!("bad {flag} {text}: {}", e.message()))
}

fn confirm_on_terminal(question: &str) -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!("rotating changes AWS: pass --yes to go ahead (or --dry-run to see the plan)");
    }
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        bail!("not confirmed; nothing was changed")
    }
}

fn print_plan(args: &RotateArgs, account: &AccountId, old: &AccessKeyId, plan: &Plan) {
    let t = &plan.timings;
    let user = &args.user;
    println!("Plan: rotate key {old} of {user} in account {account}");
    let mut steps = vec![format!("iam:ListAccessKeys {user}: check that {old} is active and a key slot is free")];
    if plan.delete_inactive {
        steps.push(format!("iam:DeleteAccessKey {user} <other key>: only if the other slot holds an inactive key"));
    }
    steps.push(format!("iam:CreateAccessKey {user}: the new key, its id recorded at once"));
    for sink in &plan.deliver {
        let write = match sink {
            Sink::CredentialsFile { .. } => " (the profile's previous lines kept in a 0600 copy beside the file until the rotation ends)".to_owned(),
            Sink::Secretsmanager { .. } => " (secretsmanager:PutSecretValue; restore makes the version current before it AWSCURRENT again)".to_owned(),
            Sink::Ssm { .. } => " (ssm:PutParameter SecureString; the previous version stays readable)".to_owned(),
            _ => String::new(),
        };
        steps.push(format!("deliver to {}{write}", sinks::of(sink).describe()));
    }
    for v in &plan.verify {
        steps.push(format!("verify: {} (up to {})", verify::describe(v), t.verify_timeout));
    }
    steps.push(format!(
        "iam:GetAccessKeyLastUsed {old}: wait until it has been unused for {} after delivery (at most {}, then ask a person)",
        t.quiet_period(),
        t.drain_timeout
    ));
    steps.push(format!("iam:UpdateAccessKey {old} Inactive"));
    for v in &plan.verify {
        steps.push(format!("verify again: {} (on failure: reactivate {old} and roll back)", verify::describe(v)));
    }
    steps.push(format!("wait {}, check {old} is still inactive, then iam:DeleteAccessKey {old}", t.grace));
    for (i, step) in steps.iter().enumerate() {
        println!("  {:>2}. {step}", i + 1);
    }
    println!("Nothing was changed (--dry-run).");
}

/// Short, unique, and sortable by day: `rot-20261128-3f9a1c`.
fn new_rotation_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    format!("rot-{}-{:06x}", now().strftime("%Y%m%d"), h.finish() & 0xff_ffff)
}
