-- zolder schema, part 3: fetch state toward the ISP accounts.
-- Shared by the fetchmailrc importer (seeding seen UIDLs from .fetchids) and the fetch
-- module (POP3 seen UIDLs, IMAP UIDVALIDITY/last UID, per-account poll status).
-- A released migration is never edited; add a new file instead.

-- Messages already fetched (or, after an import, already fetched by fetchmail) and left
-- on the server. POP3: folder = '' and uid = the UIDL. Committed per message, in the
-- same transaction as the delivery, so a crash never forgets a delivered message.
CREATE TABLE fetch_seen (
    account  TEXT NOT NULL,
    folder   TEXT NOT NULL,
    uid      TEXT NOT NULL,
    seen_at  INTEGER,                   -- unix seconds (delete_after_days counts from here)
    PRIMARY KEY (account, folder, uid)
);

-- IMAP: per account and folder, the UIDVALIDITY we know and the highest UID fetched.
CREATE TABLE fetch_state (
    account      TEXT NOT NULL,
    folder       TEXT NOT NULL,
    uidvalidity  INTEGER,
    last_uid     INTEGER,
    PRIMARY KEY (account, folder)
);

-- What `zolder status` shows per account.
CREATE TABLE fetch_status (
    account     TEXT PRIMARY KEY,
    last_poll   INTEGER,                -- unix seconds
    result      TEXT,                   -- 'ok', 'tempfail', 'error', …
    fetched     INTEGER,                -- messages fetched in the last poll
    next_poll   INTEGER,                -- unix seconds
    last_error  TEXT
);
