//! The key as two fields of a JSON value that others may share (a Secrets
//! Manager secret, an SSM parameter): other fields, another rotation's key
//! under other names. Delivery and restore change rekey's two fields only.

use rekey_core::{AccessKeyId, Credentials, Secret};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The names of the key id field and of the secret field.
pub(super) type Fields<'a> = (&'a str, &'a str);

fn as_object(text: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(text).ok()? {
        Value::Object(object) => Some(object),
        _ => None,
    }
}

fn text_of(object: Map<String, Value>) -> Secret {
    let text = zeroize::Zeroizing::new(Value::Object(object).to_string());
    Secret::new(text.as_str())
}

/// The key id and secret in a JSON value, if both are there.
pub(super) fn parse_credentials(text: &str, fields: Fields) -> Option<Credentials> {
    let value: Value = serde_json::from_str(text).ok()?;
    Some(Credentials {
        access_key_id: AccessKeyId::new(value.get(fields.0)?.as_str()?),
        secret_access_key: Secret::new(value.get(fields.1)?.as_str()?),
    })
}

/// Whether the id field of `text` names `key`: then the fields are rekey's
/// to restore.
pub(super) fn holds(text: &str, fields: Fields, key: &AccessKeyId) -> bool {
    as_object(text).is_some_and(|object| object.get(fields.0).and_then(Value::as_str) == Some(key.as_str()))
}

/// `current` with `creds` in the two fields, every other field kept (a
/// value that is no JSON object is replaced); `None` if it holds them already.
pub(super) fn with_key(current: Option<&str>, fields: Fields, creds: &Credentials) -> Option<Secret> {
    if current.and_then(|text| parse_credentials(text, fields)).as_ref() == Some(creds) {
        return None;
    }
    let mut object = current.and_then(as_object).unwrap_or_default();
    object.insert(fields.0.to_owned(), creds.access_key_id.as_str().into());
    object.insert(fields.1.to_owned(), creds.secret_access_key.expose().into());
    Some(text_of(object))
}

/// What a restore writes.
#[derive(Debug, PartialEq)]
pub(super) enum Restore {
    /// The value no longer holds the new key (restored already, or changed since): left alone.
    Unchanged,
    Write(Secret),
    /// Nothing would be left, and there was no value before.
    Emptied,
}

/// `current` with the two fields as they were in `before` (removed where
/// it lacked them), if its id field still names `new_key`; every other
/// field keeps its current value.
pub(super) fn without_key(current: &str, before: Option<&str>, fields: Fields, new_key: &AccessKeyId) -> Restore {
    let Some(mut object) = as_object(current).filter(|_| holds(current, fields, new_key)) else {
        return Restore::Unchanged;
    };
    let old = before.and_then(as_object);
    for field in [fields.0, fields.1] {
        match old.as_ref().and_then(|old| old.get(field)) {
            Some(value) => object.insert(field.to_owned(), value.clone()),
            None => object.remove(field),
        };
    }
    match (before, old) {
        // Nothing else changed since: the old text, byte for byte.
        (Some(text), Some(old)) if old == object => Restore::Write(Secret::new(text)),
        // Delivery replaced a value that was no JSON object.
        (Some(text), None) if object.is_empty() => Restore::Write(Secret::new(text)),
        (None, _) if object.is_empty() => Restore::Emptied,
        _ => Restore::Write(text_of(object)),
    }
}

/// Waits for this process's other writers of one shared value (`rekey run`
/// advances rotations concurrently). Other processes' writes are kept by
/// each sink's version check; this spares the retries in one process.
pub(super) async fn exclusive(value: String) -> tokio::sync::OwnedMutexGuard<()> {
    static LOCKS: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>> = Mutex::new(BTreeMap::new());
    let lock = LOCKS.lock().unwrap_or_else(PoisonError::into_inner).entry(value).or_default().clone();
    lock.lock_owned().await
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: Fields = ("AccessKeyId", "SecretAccessKey");

    fn creds(id: &str, secret: &str) -> Credentials {
        Credentials { access_key_id: AccessKeyId::new(id), secret_access_key: Secret::new(secret) }
    }

    fn json(secret: &Secret) -> Value {
        serde_json::from_str(secret.expose()).unwrap()
    }

    fn written(restore: Restore) -> Value {
        match restore {
            Restore::Write(secret) => json(&secret),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn delivery_keeps_other_fields_and_reads_back() {
        let new = creds("AKIANEW", "s3cr3t");
        let merged = with_key(Some(r#"{"region":"eu-west-1","AccessKeyId":"AKIAOLD"}"#), FIELDS, &new).unwrap();
        assert_eq!(json(&merged), serde_json::json!({"region": "eu-west-1", "AccessKeyId": "AKIANEW", "SecretAccessKey": "s3cr3t"}));
        assert_eq!(parse_credentials(merged.expose(), FIELDS), Some(new.clone()));
        assert_eq!(with_key(Some(merged.expose()), FIELDS, &new), None, "already there");
        assert_eq!(json(&with_key(Some("plain text"), FIELDS, &new).unwrap()), serde_json::json!({"AccessKeyId": "AKIANEW", "SecretAccessKey": "s3cr3t"}));
        assert_eq!(parse_credentials("not json", ("a", "b")), None);
    }

    #[test]
    fn a_restore_changes_only_its_own_fields() {
        let before = r#"{"AppId":"AKIAOLD","AppSecret":"old","OtherId":"AKIAOTHEROLD","OtherSecret":"o","region":"eu-west-1"}"#;
        // Since delivery: the other rotation delivered, a person moved the region.
        let now = r#"{"AppId":"AKIANEW","AppSecret":"new","OtherId":"AKIAOTHERNEW","OtherSecret":"n","region":"us-west-2"}"#;
        let restored = written(without_key(now, Some(before), ("AppId", "AppSecret"), &AccessKeyId::new("AKIANEW")));
        assert_eq!(
            restored,
            serde_json::json!({"AppId": "AKIAOLD", "AppSecret": "old", "OtherId": "AKIAOTHERNEW", "OtherSecret": "n", "region": "us-west-2"})
        );
        // Restored already, or someone put another key there: left alone.
        assert_eq!(without_key(&restored.to_string(), Some(before), ("AppId", "AppSecret"), &AccessKeyId::new("AKIANEW")), Restore::Unchanged);
    }

    #[test]
    fn a_restore_puts_back_the_old_text_or_removes_what_was_not_there() {
        let new = AccessKeyId::new("AKIANEW");
        let now = r#"{"AccessKeyId":"AKIANEW","SecretAccessKey":"new"}"#;
        let before = "{ \"SecretAccessKey\": \"old\",\n  \"AccessKeyId\": \"AKIAOLD\" }";
        assert_eq!(without_key(now, Some(before), FIELDS, &new), Restore::Write(Secret::new(before)), "byte for byte");
        assert_eq!(without_key(now, Some("old-value"), FIELDS, &new), Restore::Write(Secret::new("old-value")), "no JSON before");
        assert_eq!(without_key(now, None, FIELDS, &new), Restore::Emptied);
        let with_more = r#"{"AccessKeyId":"AKIANEW","SecretAccessKey":"new","region":"us-west-2"}"#;
        assert_eq!(written(without_key(with_more, None, FIELDS, &new)), serde_json::json!({"region": "us-west-2"}));
        assert_eq!(written(without_key(with_more, Some(r#"{"AccessKeyId":"AKIAOLD"}"#), FIELDS, &new)), serde_json::json!({"AccessKeyId": "AKIAOLD", "region": "us-west-2"}));
    }
}
