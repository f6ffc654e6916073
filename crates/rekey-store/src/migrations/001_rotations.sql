-- One row per rotation: the cached stage and what the engine needs to
-- resume it. Never a secret: the engine's plan and progress are JSON of ids,
-- times and restore references only.
CREATE TABLE rotations (
    id             TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL,
    user_name      TEXT NOT NULL,
    old_key_id     TEXT NOT NULL,
    new_key_id     TEXT,
    stage          TEXT NOT NULL,
    blocked_reason TEXT,
    plan           TEXT NOT NULL,
    progress       TEXT NOT NULL,
    started_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    next_check_at  INTEGER,
    lease_owner    TEXT,
    lease_until    INTEGER
);

-- At most one unfinished rotation per old key.
CREATE UNIQUE INDEX rotations_one_open_per_key ON rotations (account_id, old_key_id)
    WHERE stage NOT IN ('completed', 'rolled_back', 'aborted', 'failed');

CREATE INDEX rotations_due ON rotations (next_check_at)
    WHERE stage NOT IN ('completed', 'rolled_back', 'aborted', 'failed', 'blocked');

-- The audit log: the truth of what happened, append-only.
CREATE TABLE audit (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    at             INTEGER NOT NULL,
    actor          TEXT NOT NULL,
    rotation_id    TEXT REFERENCES rotations (id),
    event          TEXT NOT NULL,
    from_stage     TEXT,
    to_stage       TEXT,
    aws_request_id TEXT,
    detail         TEXT NOT NULL
);

CREATE INDEX audit_by_rotation ON audit (rotation_id, seq);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
