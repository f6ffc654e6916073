//! One rotation as people and scripts see it: the lines printed after
//! `rotate`, `confirm`, `rollback` and `abort` and by `status ID`, its JSON
//! object, and the exit code of a rotation that did not complete.

use rekey_core::workflow::Stage;
use rekey_core::AccessKeyId;
use rekey_engine::runner::View;
use rekey_store::RotationRecord;
use serde_json::Value;

/// The JSON object of one rotation (SPEC section 5 fields, and progress).
pub fn to_json(r: &RotationRecord) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(View::of(r)?)?)
}

/// One rotation in a few lines, after `rotate`, `confirm` and the like.
pub fn print_one(r: &RotationRecord) -> anyhow::Result<()> {
    let v = View::of(r)?;
    outln!("{}: {} of {} -> {}", v.id, v.old_key_id, v.user_name, v.new_key_id.as_ref().map_or("(no new key yet)", AccessKeyId::as_str))?;
    match v.came_from {
        Some(from) => outln!("  stage: {} (from {from})", v.stage)?,
        None => outln!("  stage: {}", v.stage)?,
    }
    match (&v.blocked_reason, &v.waiting_for) {
        (Some(reason), _) => outln!("  reason: {reason}")?,
        (None, Some(waiting)) => outln!("  waiting: {waiting}")?,
        _ => {}
    }
    // What CloudTrail showed at the drain's last look: who is left on the old key.
    if let Some(watch) = v.old_key_consumers.as_ref().filter(|_| v.stage == Stage::Draining) {
        for c in &watch.left {
            outln!("  still on the old key: {}", c.describe())?;
        }
        for u in &watch.unexplained {
            outln!("  still on the old key, not shown by CloudTrail: {}", u.describe())?;
        }
        for c in &watch.moved {
            outln!("  moved to the new key: {}", c.describe())?;
        }
    }
    if let Some(at) = v.next_check_at {
        outln!("  next check: {at} (`rekey run` picks it up)")?;
    }
    Ok(())
}

/// A rotation that ended without completing is an error for scripts.
pub fn exit_code(stage: Stage) -> u8 {
    match stage {
        Stage::RolledBack | Stage::Failed => 2,
        _ => 0,
    }
}
