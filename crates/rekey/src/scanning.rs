//! Scanning: reading an account's keys (or several accounts') and
//! evaluating them against IAM.3, with exemptions and rotations from the
//! state store. The report `scan` prints, and that `findings`, `owners`
//! and `notify` start from.
//!
//! With the credential report (a snapshot up to 4 hours old), only users
//! with a key old enough to be FAILED or WARNING cost a call each
//! (`ListAccessKeys`: their keys as they are now, with ids). Owners come from
//! `GetAccountAuthorizationDetails` (a call per 1,000 users); without that
//! permission, from `ListUserTags` for the users that need action (and for
//! every user when `--owner` filters on them).

use crate::accounts::Accounts;
use crate::cli::{AsOf, FailOn, SourceArg};
use crate::store::open_store_to_read;
use crate::settings::{Settings, DEFAULT_CONCURRENCY};
use crate::table::count;
use crate::terminal::Terminal;
use futures::stream::{self, StreamExt};
use rekey_aws::inventory::{Fetch, Inventory, UserError, Warning};
use rekey_aws::Progress;
use rekey_aws::iam::USERS_PER_DETAILS_PAGE;
use rekey_aws::{Clients, Iam, Source};
use rekey_core::evaluate::{existed_at, old_enough_to_matter};
use rekey_core::model::whole_seconds;
use rekey_core::owners::user_path;
use rekey_aws::AwsError;
use rekey_core::exempt::{choose, ExemptRules, Fact, Needs, RuleMatch, UserFacts};
use rekey_core::report::{key_rows, rule_name, user_result, AccountSummary, Exemption, ExemptionSource, KeyRow, Note, OtherFinding, RotationRef, ScanReport, Summary};
use std::collections::{BTreeMap, HashMap};
use rekey_core::{AccountId, Compliance, Policy, UserName};

/// What to scan: the whole account unless `users` or `owner` narrow it.
pub struct Scope<'a> {
    pub source: SourceArg,
    pub users: &'a [UserName],
    pub owner: Option<&'a str>,
    pub policy: Policy,
    pub as_of: Option<AsOf>,
    /// Requests in flight at once within the account.
    pub concurrency: usize,
    /// Requests in flight at once across the accounts scanned together.
    pub in_flight: Option<&'a tokio::sync::Semaphore>,
}

impl Scope<'_> {
    /// Every user of the account, as configured: for `owners`, `notify`
    /// and `findings`.
    pub fn account(settings: &Settings) -> Scope<'static> {
        Scope { source: SourceArg::Auto, users: &[], owner: None, policy: settings.policy, as_of: None, concurrency: DEFAULT_CONCURRENCY, in_flight: None }
    }
}

/// The organization's active accounts (`ListAccounts`); the suspended ones
/// are named in a warning.
pub async fn org_accounts(clients: &Clients, caller: &AccountId, term: &Terminal) -> anyhow::Result<Vec<(AccountId, Option<String>)>> {
    let listed = rekey_aws::org::list_accounts(clients).await.map_err(|e| anyhow::anyhow!("cannot list the organization's accounts from account {caller}: {e}"))?;
    let skipped: Vec<String> = listed.iter().filter(|a| !a.active).map(|a| a.id.to_string()).collect();
    if !skipped.is_empty() {
        term.warn(&format!("skipped {} that {} not active: {}", count(skipped.len(), "account"), if skipped.len() == 1 { "is" } else { "are" }, skipped.join(", ")));
    }
    Ok(listed.into_iter().filter(|a| a.active).map(|a| (a.id, a.name)).collect())
}

/// Calls in flight at once across the accounts of one scan.
const ORG_IN_FLIGHT: usize = 32;

/// Scans several accounts, `across` at once, each through
/// [`Accounts::clients_for`]. An account that fails (its role cannot be
/// assumed, access denied, throttled past retries) is an error of the
/// report; the others are scanned all the same.
pub async fn collect_many(
    scope: &Scope<'_>,
    targets: &[(AccountId, Option<String>)],
    accounts: &Accounts<'_>,
    across: usize,
    settings: &Settings,
    term: &Terminal,
) -> anyhow::Result<ScanReport> {
    let now = whole_seconds(jiff::Timestamp::now());
    // One as_of for every account, even for a relative --as-of.
    let as_of = scope.as_of.map(|a| whole_seconds(a.resolve(now))).unwrap_or(now);
    // Each call in flight holds the SDK's working memory (some 100 KB): 16
    // accounts × 16 calls was most of an organization scan's peak, and
    // IAM answers no faster for it.
    let in_flight = tokio::sync::Semaphore::new(ORG_IN_FLIGHT);
    let scope = Scope { as_of: Some(AsOf::At(as_of)), in_flight: Some(&in_flight), ..*scope };
    let bar = term.accounts_progress(targets.len());
    let results: Vec<(usize, anyhow::Result<ScanReport>)> = stream::iter(targets.iter().enumerate())
        .map(|(i, (account, _))| {
            let (scope, bar) = (&scope, &bar);
            async move {
                let scanned = async {
                    let clients = accounts.clients_for(account).await?;
                    collect(scope, settings, &clients, accounts.own_clients(), &()).await
                }
                .await;
                bar.account_done(scanned.as_ref().map(|r| r.keys.len()).ok());
                (i, scanned)
            }
        })
        .buffer_unordered(across.max(1))
        .collect()
        .await;
    bar.finish();
    let mut results = results;
    results.sort_by_key(|(i, _)| *i);

    let mut merged = ScanReport {
        generated_at: now,
        as_of,
        max_age_days: scope.policy.max_age.whole_days(),
        max_age: scope.policy.max_age,
        source: "",
        report_generated_at: None,
        summary: Summary::default(),
        accounts: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
        other_findings: Vec::new(),
        keys: Vec::new(),
    };
    let mut users = 0;
    for ((account, name), (_, result)) in targets.iter().zip(results) {
        match result {
            Ok(r) => {
                users += r.summary.users;
                merged.source = r.source;
                // The oldest report is the one to be wary of.
                merged.report_generated_at = match (merged.report_generated_at, r.report_generated_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                merged.accounts.push(AccountSummary {
                    account_id: account.to_string(),
                    name: name.clone(),
                    scanned: true,
                    source: Some(r.source),
                    report_generated_at: r.report_generated_at,
                    summary: r.summary.clone(),
                });
                let of_account = |mut n: Note| {
                    n.account_id = Some(account.to_string());
                    n
                };
                merged.errors.extend(r.errors.into_iter().map(of_account));
                merged.warnings.extend(r.warnings.into_iter().map(of_account));
                merged.other_findings.extend(r.other_findings);
                merged.keys.extend(r.keys);
            }
            Err(e) => {
                let aws = e.downcast_ref::<rekey_aws::AwsError>();
                merged.accounts.push(AccountSummary {
                    account_id: account.to_string(),
                    name: name.clone(),
                    scanned: false,
                    source: None,
                    report_generated_at: None,
                    summary: Summary::default(),
                });
                merged.errors.push(Note {
                    account_id: Some(account.to_string()),
                    user_name: None,
                    operation: aws.and_then(|a| a.operation()).map(str::to_owned),
                    code: aws.map(|a| a.code().to_owned()),
                    message: format!("account {account} was not scanned: {e:#}"),
                });
            }
        }
    }
    merged.summary = Summary::of(users, &merged.keys);
    Ok(merged)
}

/// Reads and evaluates the keys in `scope`: the report every command that
/// looks at keys starts from, with exemptions and rotations from the state
/// store. A user whose keys could not be read is in `errors`.
///
/// `organization` is the caller's own clients: Organizations answers
/// `ListParents` (for `[[exempt]] ous`) only to the management account or
/// a delegated administrator, not to the member account's role.
pub async fn collect(scope: &Scope<'_>, settings: &Settings, clients: &Clients, organization: &Clients, progress: &dyn Progress) -> anyhow::Result<ScanReport> {
    if scope.owner.is_some() && settings.owner_tags.is_empty() && settings.owners_file.is_none() {
        anyhow::bail!("--owner filters on owners, but policy.owner_tags is empty and there is no policy.owners_file in rekey.toml; list the tags that name owners (e.g. owner_tags = [\"Owner\"]) or drop --owner");
    }
    let owners = settings.owners_map()?;
    let policy = scope.policy;
    let now = whole_seconds(jiff::Timestamp::now());
    let as_of = scope.as_of.map(|a| whole_seconds(a.resolve(now))).unwrap_or(now);
    let source = match scope.source {
        SourceArg::CredentialReport => Source::CredentialReport,
        SourceArg::Api => Source::Api,
        // A few named users cost fewer calls, and give fresher data, by API.
        SourceArg::Auto if !scope.users.is_empty() => Source::Api,
        SourceArg::Auto => Source::CredentialReport,
    };

    let iam = Iam::new(clients);
    let fetch = Fetch { iam: &iam, concurrency: scope.concurrency, in_flight: scope.in_flight, progress };

    let mut inventory = match fetch.load(source, scope.users).await {
        // Under auto, a missing report permission is not worth failing for.
        Err(e) if scope.source == SourceArg::Auto && e.is_report_denied() => {
            let mut inventory = fetch.load(Source::Api, scope.users).await?;
            let message = format!("{e}; read every user through the API instead (slower, same results)");
            inventory.warnings.insert(0, Warning { user: None, message });
            inventory
        }
        loaded => loaded?,
    };
    // Only FAILED and WARNING keys can be suppressed: only their users'
    // owners and exemption facts are worth a call.
    let needs_action = |u: &rekey_core::User| user_result(u, &policy, as_of) < Compliance::Suppressed;
    let whole_account = scope.users.is_empty();
    let rules = &settings.file.exempt;
    let needs = rules.needs(as_of);
    let wants_tags = !settings.owner_tags.is_empty() || needs.tags;
    let filtering = scope.owner.is_some();
    // Every user's tags and groups at once (one call per 1,000 users), where
    // that is cheaper than a call per user who needs them, do not depend on
    // the keys: read while the keys are listed again, not after.
    let candidates = inventory.users.iter().filter(|u| filtering || needs_action(u)).count();
    let read_all = whole_account && (wants_tags || needs.groups) && candidates > inventory.users.len().div_ceil(USERS_PER_DETAILS_PAGE);
    let all_details = async { if read_all { Some(iam.all_user_details().await) } else { None } };
    let ((), all_details) = tokio::join!(fetch.refresh_keys(&mut inventory, |k| old_enough_to_matter(k, &policy, as_of)), all_details);
    // Denied: the fills below ask per user, not again for all.
    let whole_account = whole_account && !matches!(all_details, Some(Err(_)));
    if let Some(Ok(all)) = all_details {
        rekey_aws::inventory::apply_details(&mut inventory.users, all);
    }
    if wants_tags {
        fetch.fill_tags(&mut inventory, whole_account, |u| filtering || needs_action(u)).await;
    }
    let (ous, unreadable) = read_rule_facts(&fetch, &mut inventory, organization, &needs, whole_account, needs_action).await;
    progress.finish();
    let mut rule_errors = Vec::new();
    let by_rule = rule_exemptions(&inventory.users, rules, ous.as_deref(), as_of, needs_action, &unreadable, &mut rule_errors);
    let not_yet_created = inventory.users.iter().flat_map(|u| &u.keys).filter(|k| !existed_at(k, as_of)).count();
    if not_yet_created > 0 {
        let verb = if not_yet_created == 1 { "is" } else { "are" };
        let message = format!("{} created after --as-of {as_of} {verb} not listed: they did not exist then", count(not_yet_created, "key"));
        inventory.warnings.push(Warning { user: None, message });
    }

    // The owner: the first owner tag the user has, else the owners file's.
    let owner_of = |u: &rekey_core::User| {
        u.owner(&settings.owner_tags)
            .or_else(|| owners.as_ref().and_then(|map| map.owner_for(u.name.as_str(), user_path(&u.arn))))
            .map(str::to_owned)
    };
    if let Some(owner) = scope.owner {
        if inventory.owners_unknown && owners.is_none() {
            anyhow::bail!("--owner {owner} needs the users' owner tags, and they cannot be read: grant iam:GetAccountAuthorizationDetails or iam:ListUserTags (see `rekey policy`)");
        }
        inventory.users.retain(|u| owner_of(u).as_deref() == Some(owner));
    }
    let mut keys = key_rows(&inventory.users, &policy, as_of, &settings.owner_tags);
    for key in keys.iter_mut().filter(|k| k.owner.is_none()) {
        key.owner = owners.as_ref().and_then(|map| map.owner_for(&key.user_name, user_path(&key.user_arn))).map(str::to_owned);
    }
    if let Some(message) = mark_state(&mut keys, settings, as_of, &by_rule).await? {
        inventory.warnings.push(Warning { user: None, message });
    }
    let Inventory { source, report_generated_at, root_with_active_key, users, errors, warnings, .. } = inventory;
    Ok(ScanReport {
        generated_at: now,
        as_of,
        max_age_days: policy.max_age.whole_days(),
        max_age: policy.max_age,
        source: source.as_str(),
        report_generated_at,
        summary: Summary::of(users.len(), &keys),
        accounts: Vec::new(),
        errors: rule_errors.into_iter().chain(errors.iter().map(error_note)).collect(),
        warnings: warnings.iter().map(warning_note).collect(),
        other_findings: root_with_active_key.iter().map(|a| OtherFinding::root_access_key(a.as_str())).collect(),
        keys,
    })
}

/// The report's warnings, other findings and errors, on stderr.
pub fn tell_problems(report: &ScanReport, term: &Terminal) {
    for w in &report.warnings {
        term.warn(&problem_line(w));
    }
    for f in &report.other_findings {
        term.warn(&format!("{} {}: {}", f.control, f.account_id, f.reason));
    }
    for e in &report.errors {
        term.error(&problem_line(e));
    }
    // Accounts that were not scanned say so in their own error.
    let users: Vec<&str> = report.errors.iter().filter_map(|e| e.user_name.as_deref()).collect();
    if !users.is_empty() {
        term.error(&format!("the scan is incomplete: the keys of {} could not be read and are missing from the output", users.join(", ")));
    }
}

/// What `[[exempt]]` rules need beyond the tags (read with the owners, by
/// [`Fetch::fill_tags`]), for the users `wanted` picks: their groups and
/// their account's organizational units; and why a fact stays unknown.
pub async fn read_rule_facts(
    fetch: &Fetch<'_>,
    inventory: &mut Inventory,
    organization: &Clients,
    needs: &Needs,
    whole_account: bool,
    wanted: impl Fn(&rekey_core::User) -> bool,
) -> (Option<Vec<String>>, Unreadable) {
    let mut unreadable = Unreadable::default();
    if needs.groups {
        unreadable.groups = fetch.fill_groups(inventory, whole_account, &wanted).await;
    }
    if needs.tags && inventory.owners_unknown {
        unreadable.tags = Some(AwsError::AccessDenied { operation: "iam:ListUserTags", message: "the user tags cannot be read".into() });
    }
    let mut ous = None;
    if let Some(account) = inventory.users.iter().find(|u| needs.ous && wanted(u)).map(|u| u.account_id.clone()) {
        match rekey_aws::org::parents_of(organization, &account).await {
            Ok(parents) => ous = Some(parents),
            Err(e) => unreadable.ous = Some(e),
        }
    }
    (ous, unreadable)
}

/// Why a fact `[[exempt]]` rules need could not be read in an account.
#[derive(Debug, Default)]
pub struct Unreadable {
    pub groups: Option<AwsError>,
    pub tags: Option<AwsError>,
    pub ous: Option<AwsError>,
}

impl Unreadable {
    fn of(&self, fact: Fact) -> Option<&AwsError> {
        match fact {
            Fact::Groups => self.groups.as_ref(),
            Fact::Tags => self.tags.as_ref(),
            Fact::Ous => self.ous.as_ref(),
        }
    }
}

/// Each user's exemption by `[[exempt]]` rule, for the users `candidate`
/// picks (only they have keys to suppress). A user the rules cannot decide
/// about (a fact unreadable) is not exempt, and the account gets one error
/// per rule saying so: a scan that cannot tell never counts such a key as
/// FAILED or SUPPRESSED silently.
pub fn rule_exemptions(
    users: &[rekey_core::User],
    rules: &ExemptRules,
    ous: Option<&[String]>,
    as_of: jiff::Timestamp,
    candidate: impl Fn(&rekey_core::User) -> bool,
    unreadable: &Unreadable,
    errors: &mut Vec<Note>,
) -> HashMap<(String, String), Exemption> {
    let mut exempt = HashMap::new();
    let mut undecided: BTreeMap<(usize, &'static str), (Vec<String>, Option<&AwsError>)> = BTreeMap::new();
    if rules.is_empty() {
        return exempt;
    }
    for user in users.iter().filter(|u| candidate(u)) {
        let facts = UserFacts { account_id: &user.account_id, groups: user.groups.as_deref(), tags: user.tags.as_deref(), ous };
        match rules.first_match(&facts, as_of) {
            RuleMatch::Exempt { exemption, .. } => {
                exempt.insert((user.account_id.to_string(), user.name.to_string()), exemption);
            }
            RuleMatch::NotExempt => {}
            RuleMatch::Unknown { rule, missing } => {
                let entry = undecided.entry((rule, missing.as_str())).or_insert_with(|| (Vec::new(), unreadable.of(missing)));
                entry.0.push(user.name.to_string());
            }
        }
    }
    for ((rule, fact), (users, error)) in undecided {
        let why = error.map(|e| format!(" ({e})")).unwrap_or_default();
        let selector = rules.0[rule - 1].selector.describe();
        errors.push(Note {
            account_id: None,
            user_name: None,
            operation: error.and_then(|e| e.operation()).map(str::to_owned),
            code: error.map(|e| e.code().to_owned()),
            message: format!(
                "cannot tell whether {} {} exempt by {} ({selector}): their {fact} could not be read{why}; their keys are shown as evaluated, neither exempt nor counted as settled. Grant the read `rekey policy` prints, or fix the rule",
                count(users.len(), "user"),
                if users.len() == 1 { "is" } else { "are" },
                rule_name(rule),
            ),
        });
    }
    exempt
}

/// Keys under rotation show its id and stage; users exempt at `as_of`
/// their exemption: a recorded one (state store) before a rule's
/// (`by_rule`), as [`rekey_core::exempt::choose`] decides. Reads the state
/// store only if it exists: a scan never creates one. Returns the warning
/// of a store migrated elsewhere.
async fn mark_state(keys: &mut [KeyRow], settings: &Settings, as_of: jiff::Timestamp, by_rule: &HashMap<(String, String), Exemption>) -> anyhow::Result<Option<String>> {
    let apply_rules = |keys: &mut [KeyRow], recorded: &dyn Fn(&KeyRow) -> Option<Exemption>| {
        for key in keys.iter_mut() {
            let rule = by_rule.get(&(key.account_id.clone(), key.user_name.clone())).cloned();
            if let Some(exemption) = choose(recorded(key), rule) {
                key.exempt(exemption);
            }
        }
    };
    if !settings.state_exists() {
        apply_rules(keys, &|_| None);
        return Ok(None);
    }
    let (store, warning) = open_store_to_read(settings).await?;
    let open = rekey_store::rotations(&*store, &rekey_store::ListQuery::default()).await?;
    let exemptions = store.open_exemptions().await?;
    for key in keys.iter_mut() {
        let rotation = open.iter().find(|r| Some(r.old_key_id.as_str()) == key.access_key_id.as_deref() && r.account_id.as_str() == key.account_id);
        key.rotation = rotation.map(|r| Box::new(RotationRef { id: r.id.clone(), stage: r.stage.as_str().to_owned(), retirement: r.plan["retire"] == true }));
    }
    let recorded = |key: &KeyRow| {
        let e = exemptions.iter().find(|e| e.account_id.as_str() == key.account_id && e.user_name.as_str() == key.user_name && e.in_force(as_of))?;
        Some(recorded_exemption(e))
    };
    apply_rules(keys, &recorded);
    Ok(warning)
}

/// A `rekey suppress` exemption as scans show it.
pub fn recorded_exemption(e: &rekey_store::ExemptionRecord) -> Exemption {
    Exemption { source: ExemptionSource::Recorded { by: e.by.clone() }, reason: e.reason.clone(), until: e.until }
}

/// Whether `result` is at or above `--fail-on`: exit 1.
pub fn at_or_above(result: Compliance, fail_on: FailOn) -> bool {
    match fail_on {
        FailOn::Failed => result == Compliance::Failed,
        FailOn::Warning => matches!(result, Compliance::Failed | Compliance::Warning),
        FailOn::Never => false,
    }
}

fn error_note(e: &UserError) -> Note {
    Note {
        user_name: Some(e.user.to_string()),
        operation: e.error.operation().map(str::to_owned),
        code: Some(e.error.code().to_owned()),
        message: e.error.to_string(),
        ..Note::default()
    }
}

fn warning_note(w: &Warning) -> Note {
    Note { user_name: w.user.as_ref().map(ToString::to_string), message: w.message.clone(), ..Note::default() }
}

/// A scan warning or error as one terminal line.
fn problem_line(n: &Note) -> String {
    match &n.user_name {
        Some(user) => format!("{user}: {}", n.message),
        None => n.message.clone(),
    }
}
