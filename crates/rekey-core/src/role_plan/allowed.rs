//! What a user's IAM policies allow, as [`super::RolePlan::build`] takes
//! it: the `Action` of every `Allow` statement of the documents given
//! (the user's inline and attached policies and its groups'). What a plan
//! does not model is counted and said: `Deny`, `NotAction`, conditions and
//! resources.

use serde_json::Value;
use std::collections::BTreeSet;

/// One policy document as IAM hands it back (URL-encoded, or not), and
/// where it came from: `inline policy deploy of user app`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyText {
    pub source: String,
    pub document: String,
}

/// The action patterns the policies allow, and what was not modelled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allowed {
    /// `s3:GetObject`, `s3:Get*`, `*`: sorted, each once.
    pub actions: Vec<String>,
    /// How many documents were read.
    pub documents: usize,
    /// Statements that deny, allow all but some actions (`NotAction`), or
    /// allow only under a condition: none of them changes `actions`.
    pub deny: usize,
    pub not_action: usize,
    pub conditional: usize,
    /// The sources of documents that are not JSON policies.
    pub unreadable: Vec<String>,
}

impl Allowed {
    /// What a plan should say about the policies it was bounded by
    /// (nothing when there were none).
    pub fn warnings(&self) -> Vec<String> {
        if self.documents == 0 {
            return Vec::new();
        }
        let mut out = vec![format!(
            "allowed_not_seen comes from the Action of the Allow statements of the user's {} (inline, attached, and its groups'); \
             Deny, NotAction, conditions and resources are not modelled{}",
            match self.documents {
                1 => "1 policy".to_owned(),
                n => format!("{n} policies"),
            },
            self.not_modelled()
        )];
        for source in &self.unreadable {
            out.push(format!("{source} is not a JSON policy document: its actions are not counted"));
        }
        out
    }

    /// `: 1 Deny statement, 2 NotAction statements` when there are any.
    fn not_modelled(&self) -> String {
        let counts: Vec<String> = [(self.deny, "Deny"), (self.not_action, "NotAction"), (self.conditional, "conditional Allow")]
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what} statement{}", if n == 1 { "" } else { "s" }))
            .collect();
        if counts.is_empty() {
            String::new()
        } else {
            format!(" ({} in them: a Deny may take away what allowed_not_seen lists, a NotAction allows more than it lists)", counts.join(", "))
        }
    }
}

/// The `Action` of the `Allow` statements of `policies`.
pub fn allowed_actions(policies: &[PolicyText]) -> Allowed {
    let mut out = Allowed { documents: policies.len(), ..Allowed::default() };
    let mut actions = BTreeSet::new();
    for policy in policies {
        let Some(doc) = document(&policy.document) else {
            out.unreadable.push(policy.source.clone());
            continue;
        };
        let statements = match doc.get("Statement") {
            Some(Value::Array(list)) => list.clone(),
            Some(one @ Value::Object(_)) => vec![one.clone()],
            _ => {
                out.unreadable.push(policy.source.clone());
                continue;
            }
        };
        for s in &statements {
            if s.get("Effect").and_then(Value::as_str) != Some("Allow") {
                out.deny += 1;
                continue;
            }
            if s.get("NotAction").is_some() {
                out.not_action += 1;
                continue;
            }
            if s.get("Condition").is_some_and(|c| c.as_object().is_some_and(|c| !c.is_empty())) {
                out.conditional += 1;
            }
            match s.get("Action") {
                Some(Value::String(a)) => {
                    actions.insert(a.clone());
                }
                Some(Value::Array(list)) => actions.extend(list.iter().filter_map(Value::as_str).map(str::to_owned)),
                _ => {}
            }
        }
    }
    out.actions = actions.into_iter().collect();
    out
}

/// A policy document as JSON: as given, else URL-decoded (IAM encodes
/// the documents it returns as RFC 3986 says).
fn document(text: &str) -> Option<Value> {
    serde_json::from_str::<Value>(text).ok().or_else(|| serde_json::from_str(&percent_decoded(text)?).ok()).filter(Value::is_object)
}

/// `%7B%22a%22` → `{"a"`; `None` for a malformed escape or bytes that are not UTF-8.
fn percent_decoded(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(source: &str, document: &str) -> PolicyText {
        PolicyText { source: source.into(), document: document.into() }
    }

    #[test]
    fn allow_statements_give_their_actions_and_the_rest_is_counted() {
        let a = allowed_actions(&[
            text("managed", r#"{"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:GetObject", "kms:Decrypt"], "Resource": "*"},
                {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "true"}}},
                {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"},
                {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}"#),
            text("inline", r#"{"Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}}"#),
        ]);
        assert_eq!(a.actions, ["kms:Decrypt", "s3:GetObject", "s3:ListAllMyBuckets"]);
        assert_eq!((a.documents, a.deny, a.not_action, a.conditional), (2, 1, 1, 1));
        let w = a.warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("2 policies") && w[0].contains("1 Deny statement, 1 NotAction statement, 1 conditional Allow statement"), "{w:?}");
    }

    #[test]
    fn url_encoded_documents_are_read_and_bad_ones_named() {
        let encoded = "%7B%22Statement%22%3A%20%5B%7B%22Effect%22%3A%20%22Allow%22%2C%20%22Action%22%3A%20%22sqs%3A%2A%22%7D%5D%7D";
        let a = allowed_actions(&[text("group policy g", encoded), text("inline policy x", "%ZZ"), text("y", r#"{"Version": "2012-10-17"}"#)]);
        assert_eq!(a.actions, ["sqs:*"]);
        assert_eq!(a.unreadable, ["inline policy x", "y"]);
        assert!(a.warnings().iter().any(|w| w.starts_with("inline policy x is not a JSON policy document")));
        assert!(!a.warnings()[0].contains("Deny statement"), "nothing to count: {:?}", a.warnings());
        assert_eq!(percent_decoded("a%2"), None);
        assert_eq!(percent_decoded("100%25 ok").as_deref(), Some("100% ok"));
    }

    #[test]
    fn no_policy_allows_nothing_and_says_nothing() {
        let a = allowed_actions(&[]);
        assert!(a.actions.is_empty() && a.warnings().is_empty());
        let one = allowed_actions(&[text("x", r#"{"Statement": []}"#)]);
        assert!(one.actions.is_empty() && one.warnings()[0].contains("user's 1 policy"), "{:?}", one.warnings());
    }
}
