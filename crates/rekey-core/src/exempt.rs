//! Exemptions as policy: the `[[exempt]]` rules of rekey.toml, and the one
//! place that decides whether a user is exempt (a recorded exemption from
//! `rekey suppress`, else the first rule in force that matches).
//!
//! A rule has a reason, one selector (an IAM group, a user tag, accounts,
//! organizational units) and maybe an end. What a selector needs to know
//! about a user (its groups, tags, or its account's OUs) costs AWS calls, so
//! callers ask [`ExemptRules::needs`] first and read only that.

use crate::model::AccountId;
use crate::report::Exemption;
use jiff::Timestamp;

/// What a rule matches on: exactly one per rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// Members of this IAM group.
    Group(String),
    /// Users with this tag (key and value exactly).
    Tag { key: String, value: String },
    /// Every user of these accounts.
    Accounts(Vec<AccountId>),
    /// Every user of an account under any of these organizational units
    /// (or roots), at any depth.
    Ous(Vec<String>),
}

impl Selector {
    /// The selector as rekey.toml writes it, for messages and notes.
    pub fn describe(&self) -> String {
        match self {
            Selector::Group(g) => format!("group {g}"),
            Selector::Tag { key, value } => format!("tag {key}={value}"),
            Selector::Accounts(a) => format!("accounts {}", a.iter().map(AccountId::as_str).collect::<Vec<_>>().join(", ")),
            Selector::Ous(o) => format!("ous {}", o.join(", ")),
        }
    }
}

/// One `[[exempt]]` entry, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExemptRule {
    pub reason: String,
    pub selector: Selector,
    /// The rule no longer applies from this time on.
    pub until: Option<Timestamp>,
}

impl ExemptRule {
    pub fn in_force(&self, at: Timestamp) -> bool {
        self.until.is_none_or(|until| at < until)
    }
}

/// The `[[exempt]]` rules in the order of rekey.toml; rule N is the N-th
/// entry (numbered from 1, as people count them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExemptRules(pub Vec<ExemptRule>);

/// What the rules in force need to know about users: each costs reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    pub groups: bool,
    pub tags: bool,
    pub ous: bool,
}

impl Needs {
    pub fn any(self) -> bool {
        self.groups || self.tags || self.ous
    }
}

/// What is known about a user; `None` where it was not (or could not be) read.
#[derive(Debug, Clone, Copy)]
pub struct UserFacts<'a> {
    pub account_id: &'a AccountId,
    pub groups: Option<&'a [String]>,
    pub tags: Option<&'a [(String, String)]>,
    /// The account's parents, nearest first, up to the root.
    pub ous: Option<&'a [String]>,
}

/// Which fact a rule could not be checked without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    Groups,
    Tags,
    Ous,
}

impl Fact {
    pub fn as_str(self) -> &'static str {
        match self {
            Fact::Groups => "group memberships",
            Fact::Tags => "tags",
            Fact::Ous => "organizational units",
        }
    }
}

/// The outcome of the rules for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleMatch {
    /// Rule `rule` (from 1) matches.
    Exempt { rule: usize, exemption: Exemption },
    NotExempt,
    /// No rule that could be checked matches, and rule `rule` could not be
    /// checked: whether the user is exempt is unknown.
    Unknown { rule: usize, missing: Fact },
}

impl ExemptRules {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The rules in force at `at`, with their numbers.
    fn in_force(&self, at: Timestamp) -> impl Iterator<Item = (usize, &ExemptRule)> {
        self.0.iter().enumerate().map(|(i, r)| (i + 1, r)).filter(move |(_, r)| r.in_force(at))
    }

    /// What must be read about users to apply the rules in force at `at`
    /// (an expired rule, or none at all, needs nothing).
    pub fn needs(&self, at: Timestamp) -> Needs {
        let mut needs = Needs::default();
        for (_, rule) in self.in_force(at) {
            match rule.selector {
                Selector::Group(_) => needs.groups = true,
                Selector::Tag { .. } => needs.tags = true,
                Selector::Ous(_) => needs.ous = true,
                Selector::Accounts(_) => {}
            }
        }
        needs
    }

    /// The first rule in force at `at` that matches the user. A rule that
    /// cannot be checked (its fact unknown) does not stop a later rule from
    /// matching; if none matches, the user's exemption is unknown.
    pub fn first_match(&self, user: &UserFacts<'_>, at: Timestamp) -> RuleMatch {
        let mut unknown = None;
        for (n, rule) in self.in_force(at) {
            let matched = match &rule.selector {
                Selector::Accounts(accounts) => Some(accounts.contains(user.account_id)),
                Selector::Group(group) => user.groups.map(|g| g.iter().any(|x| x == group)).ok_or(Fact::Groups).ok(),
                Selector::Tag { key, value } => user.tags.map(|t| t.iter().any(|(k, v)| k == key && v == value)).ok_or(Fact::Tags).ok(),
                Selector::Ous(ous) => user.ous.map(|parents| parents.iter().any(|p| ous.contains(p))).ok_or(Fact::Ous).ok(),
            };
            match matched {
                Some(true) => return RuleMatch::Exempt { rule: n, exemption: Exemption::by_rule(n, rule) },
                Some(false) => {}
                None => {
                    let missing = match rule.selector {
                        Selector::Group(_) => Fact::Groups,
                        Selector::Tag { .. } => Fact::Tags,
                        _ => Fact::Ous,
                    };
                    unknown.get_or_insert(RuleMatch::Unknown { rule: n, missing });
                }
            }
        }
        unknown.unwrap_or(RuleMatch::NotExempt)
    }
}

/// The exemption a user has: a recorded one (`rekey suppress`) first, else
/// the rule's. A recorded exemption is a person's explicit decision about
/// this one user, with its own end date and author, and `rekey unsuppress`
/// can lift it; a rule is a standing policy about many users. So the
/// recorded one is the one to show and to mirror; once it ends, the rule
/// applies again.
pub fn choose(recorded: Option<Exemption>, by_rule: Option<Exemption>) -> Option<Exemption> {
    recorded.or(by_rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ExemptionSource;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn rule(selector: Selector, until: Option<&str>) -> ExemptRule {
        ExemptRule { reason: format!("because {}", selector.describe()), selector, until: until.map(at) }
    }

    fn rules() -> ExemptRules {
        ExemptRules(vec![
            rule(Selector::Group("KeyRotationExempt".into()), None),
            rule(Selector::Tag { key: "rekey:exempt".into(), value: "true".into() }, Some("2027-03-31T00:00:00Z")),
            rule(Selector::Accounts(vec![AccountId::new("111111111111")]), None),
            rule(Selector::Ous(vec!["ou-abcd-12345678".into()]), None),
        ])
    }

    const NOW: &str = "2026-11-28T12:00:00Z";

    #[test]
    fn each_selector_matches_its_users() {
        let (prod, other) = (AccountId::new("111111111111"), AccountId::new("222222222222"));
        let groups = ["Admins".to_owned(), "KeyRotationExempt".to_owned()];
        let tags = [("rekey:exempt".to_owned(), "true".to_owned())];
        let wrong_tag = [("rekey:exempt".to_owned(), "TRUE".to_owned())];
        let ous = ["ou-abcd-87654321".to_owned(), "ou-abcd-12345678".to_owned(), "r-abcd".to_owned()];
        let none: [String; 0] = [];
        let base = UserFacts { account_id: &other, groups: Some(&none), tags: Some(&[]), ous: Some(&none) };
        let rule_of = |facts: UserFacts<'_>| match rules().first_match(&facts, at(NOW)) {
            RuleMatch::Exempt { rule, .. } => Some(rule),
            RuleMatch::NotExempt => None,
            RuleMatch::Unknown { .. } => panic!("every fact is known"),
        };
        assert_eq!(rule_of(base), None);
        assert_eq!(rule_of(UserFacts { groups: Some(&groups), ..base }), Some(1));
        assert_eq!(rule_of(UserFacts { tags: Some(&tags), ..base }), Some(2));
        assert_eq!(rule_of(UserFacts { tags: Some(&wrong_tag), ..base }), None, "values match exactly");
        assert_eq!(rule_of(UserFacts { account_id: &prod, ..base }), Some(3));
        assert_eq!(rule_of(UserFacts { ous: Some(&ous), ..base }), Some(4), "an OU at any depth");
        assert_eq!(rule_of(UserFacts { account_id: &prod, groups: Some(&groups), ..base }), Some(1), "the first rule wins");
    }

    #[test]
    fn an_expired_rule_does_not_match_and_needs_nothing() {
        let other = AccountId::new("222222222222");
        let tags = [("rekey:exempt".to_owned(), "true".to_owned())];
        let facts = UserFacts { account_id: &other, groups: Some(&[]), tags: Some(&tags), ous: Some(&[]) };
        assert!(matches!(rules().first_match(&facts, at(NOW)), RuleMatch::Exempt { rule: 2, .. }));
        assert_eq!(rules().first_match(&facts, at("2027-03-31T00:00:00Z")), RuleMatch::NotExempt, "until is the first moment it no longer applies");
        let only_tag = ExemptRules(vec![rules().0[1].clone()]);
        assert!(only_tag.needs(at(NOW)).tags);
        assert!(!only_tag.needs(at("2027-04-01T00:00:00Z")).any());
        assert!(!ExemptRules::default().needs(at(NOW)).any());
        assert_eq!(rules().needs(at(NOW)), Needs { groups: true, tags: true, ous: true });
    }

    #[test]
    fn an_unreadable_fact_makes_the_answer_unknown_unless_another_rule_matches() {
        let (prod, other) = (AccountId::new("111111111111"), AccountId::new("222222222222"));
        let facts = UserFacts { account_id: &other, groups: None, tags: Some(&[]), ous: Some(&[]) };
        assert_eq!(rules().first_match(&facts, at(NOW)), RuleMatch::Unknown { rule: 1, missing: Fact::Groups });
        let in_prod = UserFacts { account_id: &prod, ..facts };
        assert!(matches!(rules().first_match(&in_prod, at(NOW)), RuleMatch::Exempt { rule: 3, .. }));
    }

    #[test]
    fn the_rules_exemption_names_the_rule_and_a_recorded_one_comes_first() {
        let other = AccountId::new("111111111111");
        let facts = UserFacts { account_id: &other, groups: None, tags: None, ous: None };
        let RuleMatch::Exempt { exemption, .. } = rules().first_match(&facts, at(NOW)) else { panic!("rule 3 matches") };
        assert_eq!(exemption.source, ExemptionSource::Rule { rule: 3 });
        assert_eq!(exemption.reason, "because accounts 111111111111");
        let json = serde_json::to_value(&exemption).unwrap();
        assert_eq!(json, serde_json::json!({"source": "rule", "rule": 3, "reason": "because accounts 111111111111", "until": null}));
        let recorded = Exemption { source: ExemptionSource::Recorded { by: "alice".into() }, reason: "firmware".into(), until: None };
        assert_eq!(choose(Some(recorded.clone()), Some(exemption.clone())), Some(recorded));
        assert_eq!(choose(None, Some(exemption.clone())), Some(exemption));
    }
}
