//! Consumers of keys from CloudTrail, for `rekey consumers`, `scan
//! --consumers`, `owners`/`notify --consumers` and `status` of a draining
//! rotation: every configured region read at once, each within its own
//! request budget.

use crate::settings::Settings;
use futures::future::join_all;
use jiff::Timestamp;
use rekey_aws::cloudtrail::Trail;
use rekey_aws::{AwsError, Clients};
use rekey_core::consumers::TrailEvent;

/// CloudTrail's event history holds 90 days.
pub const HISTORY: jiff::SignedDuration = jiff::SignedDuration::from_hours(90 * 24);

/// CloudTrail in each configured region of one account.
pub struct Trails {
    trails: Vec<Trail>,
}

impl Trails {
    pub fn new(settings: &Settings, clients: &Clients) -> Trails {
        let regions = settings.file.cloudtrail.regions(&clients.region());
        Trails { trails: regions.iter().map(|r| Trail::new(clients, r)).collect() }
    }

    /// The events of `keys` from `from` (at most 90 days back) until now,
    /// from every region, with a warning for events that could not be read.
    pub async fn events(&self, keys: &[String], from: Timestamp) -> Result<(Vec<TrailEvent>, Vec<String>), AwsError> {
        let now = Timestamp::now();
        let from = from.max(now - HISTORY);
        let mut events = Vec::new();
        let mut unreadable = 0;
        for key in keys {
            // Regions have their own budgets: read them at once.
            let per_region = join_all(self.trails.iter().map(|t| t.key_events(key, from, now))).await;
            for found in per_region {
                let found = found?;
                unreadable += found.unreadable;
                events.extend(found.events);
            }
        }
        let warnings = match unreadable {
            0 => Vec::new(),
            n => vec![format!("{n} CloudTrail events could not be read and are not counted")],
        };
        Ok((events, warnings))
    }
}
