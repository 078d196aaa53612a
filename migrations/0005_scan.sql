-- zolder schema, part 5 (deliver::scan, deliver::sieve): the quarantine index,
-- the spam-training queue fed by the IMAP server, what bogofilter has been taught,
-- and the Sieve duplicate/vacation store.
-- A released migration is never edited; add a new file instead.

-- One row per held message; the file is data_dir/quarantine/<file>, written and
-- fsynced before this row is committed.
CREATE TABLE quarantine (
    id            INTEGER PRIMARY KEY,
    file          TEXT NOT NULL,        -- base name under data_dir/quarantine/
    created       INTEGER NOT NULL,     -- unix seconds
    sender        TEXT,                 -- envelope sender; NULL = <>
    recipients    TEXT NOT NULL,        -- JSON array of envelope recipients
    source        TEXT NOT NULL,        -- 'fetch', 'submit', 'local', 'queue', ...
    scanner       TEXT NOT NULL,        -- 'banned', 'clamd', 'spamd', 'rspamd', 'bogofilter', 'command'
    verdict       TEXT NOT NULL,        -- 'infected', 'banned', 'spam', 'command'
    reason        TEXT NOT NULL,        -- virus name, banned part, score
    size          INTEGER NOT NULL,
    subject       TEXT,
    message_id    TEXT,
    idem_key      TEXT UNIQUE,          -- the fetch delivery key: a re-fetch quarantines once
    released      INTEGER               -- unix seconds of `zolder quarantine release`
);

-- Spam/ham training requests. The IMAP server inserts a row when a message is moved
-- or copied into Junk ('spam') or out of it ('ham'); a worker drains the table by
-- feeding the message to bogofilter. (user, mailbox, uid) name the message at its
-- destination.
CREATE TABLE scan_training (
    id            INTEGER PRIMARY KEY,
    user          TEXT NOT NULL COLLATE NOCASE,
    mailbox       TEXT NOT NULL,
    uid           INTEGER NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('spam', 'ham')),
    created       INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
);

-- What bogofilter has been taught, by SHA-256 of the message: so that moving a message
-- back out of Junk undoes its spam registration (-Sn) instead of adding a ham one on top.
CREATE TABLE bogofilter_registered (
    digest        TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('spam', 'ham')),
    time          INTEGER NOT NULL
) WITHOUT ROWID;

-- Sieve `duplicate` / `vacation` memory: an id seen for a user until `expires`.
CREATE TABLE sieve_duplicates (
    user          TEXT NOT NULL COLLATE NOCASE,
    id            TEXT NOT NULL,
    expires       INTEGER NOT NULL,     -- unix seconds
    PRIMARY KEY (user, id)
) WITHOUT ROWID;
