//! The harness is as strict as AWS where rekey's safety depends on it: a
//! request signed with an inactive or deleted access key is rejected, so a
//! test can tell whether a deactivation broke an application. Checked with
//! the official Rust SDK, the client rekey itself uses.

use aws_config::BehaviorVersion;
use aws_sdk_iam::types::StatusType;
use rekey_emulator::Emulator;

async fn config(emu: &Emulator, id: &str, secret: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&emu.endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_iam::config::Credentials::new(id, secret, None, None, "test"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}

/// `GetCallerIdentity` signed with the key: Ok(arn) or Err(error code).
async fn whoami(emu: &Emulator, id: &str, secret: &str) -> Result<String, String> {
    let sts = aws_sdk_sts::Client::new(&config(emu, id, secret).await);
    match sts.get_caller_identity().send().await {
        Ok(out) => Ok(out.arn().unwrap_or_default().to_owned()),
        Err(e) => Err(aws_sdk_sts::error::ProvideErrorMetadata::code(&e).unwrap_or("none").to_owned()),
    }
}

#[tokio::test]
async fn inactive_and_deleted_keys_are_rejected_like_aws() {
    let emu = Emulator::empty();
    let admin = aws_sdk_iam::Client::new(&config(&emu, "testing", "testing").await);
    admin.create_user().user_name("app").send().await.unwrap();
    let key = admin.create_access_key().user_name("app").send().await.unwrap().access_key.unwrap();
    let (id, secret) = (key.access_key_id.as_str(), key.secret_access_key.as_str());

    assert_eq!(whoami(&emu, id, secret).await, Ok("arn:aws:iam::123456789012:user/app".into()));
    let used = &emu.keys("app")[0];
    assert_eq!(used["access_key_id"], id);
    assert_eq!(used["last_used_service"], "sts", "a signed request records last use");

    let set_status = |status: StatusType| admin.update_access_key().user_name("app").access_key_id(id).status(status).send();
    set_status(StatusType::Inactive).await.unwrap();
    assert_eq!(whoami(&emu, id, secret).await, Err("InvalidClientTokenId".into()));

    set_status(StatusType::Active).await.unwrap();
    assert!(whoami(&emu, id, secret).await.is_ok(), "reactivation restores access");

    admin.delete_access_key().user_name("app").access_key_id(id).send().await.unwrap();
    assert_eq!(whoami(&emu, id, secret).await, Err("InvalidClientTokenId".into()));
}

#[tokio::test]
async fn back_dating_and_call_counts() {
    let emu = Emulator::with_scenario(&serde_json::json!({
        "as_of": "2026-11-28T12:00:00Z",
        "users": [{"name": "old", "keys": [{"status": "Active", "age": "100d"}]}]
    }));
    let admin = aws_sdk_iam::Client::new(&config(&emu, "testing", "testing").await);
    emu.reset_calls();
    let keys = admin.list_access_keys().user_name("old").send().await.unwrap();
    let created = keys.access_key_metadata()[0].create_date().unwrap();
    assert_eq!(created.to_string(), "2026-08-20T12:00:00Z");
    assert_eq!(emu.calls()["by_operation"]["iam:ListAccessKeys"], 1);

    let id = keys.access_key_metadata()[0].access_key_id().unwrap();
    emu.set_key(id, &serde_json::json!({"last_used": {"at": "2026-11-01T00:00:00Z", "service": "s3", "region": "eu-west-1"}}));
    let used = admin.get_access_key_last_used().access_key_id(id).send().await.unwrap();
    let used = used.access_key_last_used().unwrap();
    assert_eq!((used.service_name(), used.region()), ("s3", "eu-west-1"));
    assert_eq!(used.last_used_date().unwrap().to_string(), "2026-11-01T00:00:00Z");
}
