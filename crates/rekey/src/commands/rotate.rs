//! `rekey rotate` (and `rekey retire`, a rotation with no new key): checks
//! everything it can without changing AWS (user, key, sinks, verifiers),
//! then records the rotation and advances it as far as it can go now. Bad
//! input changes nothing, in AWS or in the state store.

use super::{engine, send_finding_notes};
use crate::store::open_store;
use crate::accounts::Accounts;
use crate::cli::RotateArgs;
use crate::rotations::{exit_code, print_one};
use crate::settings::Settings;
use crate::table;
use crate::terminal::Terminal;
use anyhow::{anyhow, bail};
use rekey_aws::Clients;
use rekey_core::target::{Sink, Target, Verifier};
use rekey_core::report::{Exemption, ExemptionSource};
use rekey_core::{AccessKeyId, AccountId};
use rekey_engine::audit::Audit;
use rekey_engine::plan::Plan;
use rekey_engine::runner::{Acting, Engine, Prepared, Request};
use rekey_engine::targets::Configured;
use std::io::{BufRead, IsTerminal, Write};

pub async fn run(args: RotateArgs, settings: &Settings, term: &Terminal) -> anyhow::Result<u8> {
    let base = Clients::new(&settings.aws).await;
    let mut accounts = Accounts::new(&base, settings, None);
    let (account, target) = target(&args, settings, &accounts).await?;
    let plan = plan(&args, target, settings)?;
    // Another account is reached through its role, or not at all.
    let clients = match &account {
        Some(account) => accounts.clients_for(account).await?,
        None => base.clone(),
    };
    let keys = super::keys(&clients, settings);
    let may_reveal = args.reveal || term.stdout_is_terminal;
    let request = Request { user: args.user.clone(), key: args.key.as_deref().map(AccessKeyId::new), account: account.clone(), plan };
    // Bad input stops here: nothing changed in AWS, no state store created.
    let prepared = Engine::plan(&keys, &clients, &Configured, may_reveal, request).await?;
    if account.is_none() {
        // prepare asked STS with the caller's own credentials.
        accounts = accounts.knowing_caller(prepared.account());
    }
    let exemption = exemption(&args, &prepared, settings, &clients, &base).await?;
    if args.dry_run {
        print_plan(&prepared)?;
        return Ok(0);
    }
    if !args.yes {
        let what = if args.retire { "Retire (deactivate once unused, then delete, making no new key)" } else { "Rotate" };
        confirm_on_terminal(&format!("{what} key {} of {} ({})?", prepared.old_key(), prepared.user(), prepared.account()))?;
    }
    let store = open_store(settings).await?;
    let acting = Acting { account: prepared.account().clone(), keys: std::sync::Arc::new(keys), clients: clients.clone() };
    let mut engine = engine(&acting, &store, settings, may_reveal);
    let id = new_rotation_id();
    let started = engine.start(prepared, id.clone()).await;
    if let (Some(exemption), Ok(rotation)) = (&exemption, store.get(&id).await) {
        record_ignored(&store, &rotation, exemption, settings).await?;
    }
    send_finding_notes(&store, settings, &accounts, term).await?;
    term.report_calls(clients.calls());
    let rotation = match store.get(&id).await {
        Ok(rotation) => rotation,
        // Not recorded: why the start failed is the error to report.
        Err(e) => {
            started?;
            return Err(e.into());
        }
    };
    // A failed rotation is the error to report, even if stdout closed.
    let printed = print_one(&rotation);
    started?;
    printed?;
    Ok(exit_code(rotation.stage))
}

/// The user's exemption, if any: without `--ignore-exemption` an exempt
/// user is refused (nothing changed); with it, the exemption to record.
async fn exemption(args: &RotateArgs, prepared: &Prepared, settings: &Settings, clients: &Clients, caller: &Clients) -> anyhow::Result<Option<Exemption>> {
    let recorded = match settings.state_exists() {
        true => crate::store::open_store_to_read(settings).await?.0.open_exemptions().await?,
        false => Vec::new(),
    };
    let user = prepared.user().clone();
    let now = rekey_core::model::whole_seconds(jiff::Timestamp::now());
    let decided = crate::exemptions::decide(settings, clients, caller, prepared.account(), std::slice::from_ref(&user), &recorded, now).await;
    let verb = if args.retire { "retire" } else { "rotate" };
    if let Some(unknown) = decided.unknown.first() {
        if !args.ignore_exemption {
            bail!("{}; rekey will not {verb} a user it cannot tell is exempt: pass --ignore-exemption to {verb} {user} anyway", unknown.message);
        }
    }
    let Some(exemption) = decided.exempt.get(&user).cloned() else { return Ok(None) };
    if !args.ignore_exemption {
        let until = exemption.until.map(|t| format!(" until {t}")).unwrap_or_default();
        let undo = match exemption.rule() {
            Some(_) => "change the rule in rekey.toml".to_owned(),
            None => format!("`rekey unsuppress --user {user}`"),
        };
        bail!(
            "{user} is exempt{until} by {}: {}. rekey does not {verb} an exempt user's keys: pass --ignore-exemption to {verb} anyway (the audit log records it), or end the exemption first ({undo})",
            exemption.by(),
            exemption.reason
        );
    }
    Ok(Some(exemption))
}

/// The audit line saying the rotation went ahead over an exemption.
async fn record_ignored(store: &rekey_store::SharedStore, rotation: &rekey_store::RotationRecord, exemption: &Exemption, settings: &Settings) -> anyhow::Result<()> {
    let (source, by) = match &exemption.source {
        ExemptionSource::Rule { .. } => ("rule", None),
        ExemptionSource::Recorded { by } => ("recorded", Some(by.clone())),
    };
    let line = Audit::ExemptionIgnored {
        account_id: rotation.account_id.to_string(),
        user_name: rotation.user_name.to_string(),
        source: source.to_owned(),
        rule: exemption.rule(),
        by,
        reason: exemption.reason.clone(),
    };
    let now = jiff::Timestamp::now();
    let mut entry = line.about_owners(now, &settings.actor);
    entry.rotation_id = Some(rotation.id.clone());
    let change = rekey_store::Change { audit: vec![entry], ..rekey_store::Change::default() };
    store.record(&change, now, &settings.actor).await?;
    Ok(())
}

/// The account to rotate in (`None`: the caller's, not asked yet) and the
/// user's `[[target]]` there: one naming that account, else one naming
/// none. A target belongs to its account: without `--account`, a user
/// whose only targets name another account is rotated there (through
/// `[org] role_name`) or not at all, never the caller's same-named user.
async fn target<'s>(args: &RotateArgs, settings: &'s Settings, accounts: &Accounts<'_>) -> anyhow::Result<(Option<AccountId>, Option<&'s Target>)> {
    let user = &args.user;
    let of_user: Vec<&Target> = settings.file.targets.iter().filter(|t| t.user == *user).collect();
    let for_account = |account: &AccountId| {
        let exact = of_user.iter().find(|t| t.account.as_ref() == Some(account));
        exact.or_else(|| of_user.iter().find(|t| t.account.is_none())).copied()
    };
    if let Some(account) = &args.account {
        return Ok((Some(account.clone()), for_account(account)));
    }
    if of_user.iter().all(|t| t.account.is_none()) {
        return Ok((None, of_user.first().copied()));
    }
    let caller = accounts.caller().await?;
    if let Some(target) = for_account(caller) {
        return Ok((Some(caller.clone()), Some(target)));
    }
    // Every target of the user names another account here.
    let mut others = of_user.iter().filter_map(|t| Some((t.account.as_ref()?, *t)));
    let Some((other, target)) = others.next() else { return Ok((None, None)) };
    if let Some((second, _)) = others.find(|(a, _)| *a != other) {
        bail!("the [[target]]s for {user} are for accounts {other} and {second}, not for {caller}, the account of the credentials in use: pass --account to say which");
    }
    // The caller is known: only a missing role fails here.
    if accounts.check_reachable([other]).await.is_err() {
        bail!(
            "the [[target]] for {user} is for account {other}, and the credentials in use are of account {caller}, with no role configured to reach {other}: rekey will not rotate {caller}'s {user} into that target's sinks. To rotate {other}'s {user}, set [org] role_name in rekey.toml (or run with {other}'s credentials); to rotate {caller}'s, pass --account {caller} with --deliver, or add a [[target]] for it"
        );
    }
    Ok((Some(other.clone()), Some(target)))
}

/// The target from rekey.toml, with the command line's `--deliver`,
/// `--verify` and timings taking precedence. A retirement takes only the
/// target's verifiers, less `sts`: there is no new key to sign with.
fn plan(args: &RotateArgs, target: Option<&Target>, settings: &Settings) -> anyhow::Result<Plan> {
    let mut timings = settings.timings();
    timings.wait_unused = args.wait_unused.unwrap_or(timings.wait_unused);
    timings.grace = args.grace.unwrap_or(timings.grace);
    if args.retire {
        let verify = match args.verify.is_empty() {
            true => target.map(|t| t.verify.iter().filter(|v| !rekey_engine::verify::of(v).needs_secret()).cloned().collect()).unwrap_or_default(),
            false => args.verify.iter().map(|text| inline("--verify", text)).collect::<anyhow::Result<_>>()?,
        };
        return Ok(Plan { deliver: Vec::new(), verify, timings, delete_inactive: false, retire: true });
    }
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
    Ok(Plan { deliver, verify, timings, delete_inactive: args.delete_inactive, retire: false })
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

fn print_plan(p: &Prepared) -> std::io::Result<()> {
    outln!("Plan: {} key {} of {} in account {}", p.verb(), p.old_key(), p.user(), p.account())?;
    for (i, step) in p.steps().iter().enumerate() {
        outln!("  {:>2}. {}", i + 1, table::wrap(step, table::width(), 6))?;
    }
    outln!("Nothing was changed (--dry-run).")?;
    Ok(())
}

/// Short, unique, and sortable by day: `rot-20261128-3f9a1c`.
fn new_rotation_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.write_u32(std::process::id());
    format!("rot-{}-{:06x}", jiff::Timestamp::now().strftime("%Y%m%d"), h.finish() & 0xff_ffff)
}
