-- zolder schema, part 3: fetch state toward the ISP accounts.
-- A released migration is never edited; add a new file instead.

-- Messages already fetched and durably delivered, per account and folder.
-- POP3: folder = '' and uid = the UIDL. IMAP: uid = '<uidvalidity>:<uid>'.
CREATE TABLE fetch_seen (
    account       TEXT NOT NULL,
    folder        TEXT NOT NULL,
    uid           TEXT NOT NULL,
    seen_at       INTEGER NOT NULL,     -- unix seconds
    PRIMARY KEY (account, folder, uid)
) WITHOUT ROWID;

-- IMAP: per folder, the UIDVALIDITY and the highest UID fetched under it.
CREATE TABLE fetch_state (
    account       TEXT NOT NULL,
    folder        TEXT NOT NULL,
    uidvalidity   INTEGER NOT NULL,
    last_uid      INTEGER NOT NULL,
    PRIMARY KEY (account, folder)
) WITHOUT ROWID;

-- The last poll of each account, for `zolder status`.
CREATE TABLE fetch_status (
    account       TEXT PRIMARY KEY,
    last_poll     INTEGER,              -- unix seconds
    result        TEXT,                 -- 'ok', 'tempfail', 'permfail', 'running'
    fetched       INTEGER NOT NULL DEFAULT 0,
    next_poll     INTEGER,              -- unix seconds
    last_error    TEXT
);
