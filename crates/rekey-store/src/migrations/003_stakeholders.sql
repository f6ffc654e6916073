-- Exemptions: a person decided a user's keys may stay as they are, for a
-- reason, maybe until a time (`rekey suppress`). Ended rows stay, as the
-- record of who decided what.
CREATE TABLE exemptions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    reason      TEXT NOT NULL,
    until       INTEGER,
    by          TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    ended_by    TEXT,
    ended_how   TEXT CHECK (ended_how IN ('unsuppressed', 'expired', 'replaced'))
);

CREATE UNIQUE INDEX exemptions_one_open_per_user ON exemptions (account_id, user_name) WHERE ended_at IS NULL;
CREATE INDEX exemptions_expiring ON exemptions (until) WHERE ended_at IS NULL AND until IS NOT NULL;

-- Security Hub updates, written in the same transaction as the change they
-- mirror and sent in order afterwards: a Security Hub outage delays a note,
-- never loses it and never fails the change.
CREATE TABLE finding_updates (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    workflow    TEXT CHECK (workflow IN ('NEW', 'NOTIFIED', 'SUPPRESSED', 'RESOLVED')),
    note        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    sent_at     INTEGER
);

CREATE INDEX finding_updates_pending ON finding_updates (seq) WHERE sent_at IS NULL;

-- Notices sent to owners (`rekey notify`): the same list is not sent again
-- within the configured period.
CREATE TABLE notices (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    owner       TEXT,
    channel     TEXT NOT NULL,
    digest      TEXT NOT NULL,
    keys        INTEGER NOT NULL,
    sent_at     INTEGER NOT NULL,
    by          TEXT NOT NULL
);

CREATE INDEX notices_by_digest ON notices (digest, sent_at);
