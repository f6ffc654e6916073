-- Reminders on a cadence (`[notify] remind`): when each owner last got a
-- digest (at most one per min_interval), and the last reminder moment sent
-- for each key (never the same one twice). Only the latest of each is kept;
-- the audit log has every digest.
CREATE TABLE reminder_owners (
    owner_key     TEXT PRIMARY KEY,  -- '=' and the owner, or '-' for the unowned
    owner         TEXT,
    last_sent_at  INTEGER NOT NULL
);

-- A key is its account, user and creation time: a credential-report scan
-- does not list the ids of keys that still pass.
CREATE TABLE reminder_keys (
    account_id      TEXT NOT NULL,
    user_name       TEXT NOT NULL,
    key_created_at  INTEGER NOT NULL,
    moment          INTEGER NOT NULL,
    PRIMARY KEY (account_id, user_name, key_created_at)
);
