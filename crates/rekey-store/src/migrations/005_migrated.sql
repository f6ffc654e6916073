-- Set once, by `rekey state migrate`, when everything was copied to another
-- store and verified: this one is then kept to be read, and refuses to
-- start anything (new rotations, leases, stakeholder changes).
CREATE TABLE migrated (
    only        INTEGER PRIMARY KEY CHECK (only = 1),
    to_store    TEXT NOT NULL,
    at          INTEGER NOT NULL,
    by          TEXT NOT NULL
);
