-- zolder schema, part 1: users, mailboxes and the per-mailbox message index,
-- exactly-once delivery keys, and the event log.
-- A released migration is never edited; add a new file instead.

CREATE TABLE users (
    name          TEXT PRIMARY KEY COLLATE NOCASE,
    password_hash TEXT,                 -- argon2 PHC; NULL = cannot log in
    created       INTEGER NOT NULL      -- unix seconds
);

-- One row per mailbox (INBOX, Sent, Maildir++ folders, the mbox INBOX).
CREATE TABLE mailboxes (
    id            INTEGER PRIMARY KEY,
    user          TEXT NOT NULL COLLATE NOCASE,
    name          TEXT NOT NULL,        -- IMAP name, '.'-separated hierarchy ("INBOX", "Work.2025")
    uidvalidity   INTEGER NOT NULL,
    uidnext       INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    special_use   TEXT,                 -- '\Sent', '\Drafts', '\Trash', '\Junk', '\Archive'
    subscribed    INTEGER NOT NULL DEFAULT 1,
    UNIQUE (user, name)
);

-- One row per message. UIDs strictly ascending per mailbox, never reused within a
-- UIDVALIDITY (uidnext only grows).
CREATE TABLE messages (
    mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid           INTEGER NOT NULL,
    file          TEXT,                 -- Maildir: base name (no ':2,' info); NULL for mbox
    offset        INTEGER,              -- mbox: byte offset of the message (after the From_ line)
    length        INTEGER,              -- mbox: stored length in bytes
    size          INTEGER NOT NULL,     -- RFC822.SIZE (CRLF-normalised size)
    internal_date INTEGER NOT NULL,     -- unix seconds
    flags         TEXT NOT NULL DEFAULT '',   -- space-separated: '\Seen \Flagged $Junk'
    modseq        INTEGER NOT NULL,
    message_id    TEXT,                 -- Message-ID header, for de-duplication
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;

CREATE INDEX messages_message_id ON messages (message_id);

-- Expunged UIDs with the MODSEQ of their removal (CONDSTORE/QRESYNC VANISHED).
CREATE TABLE expunged (
    mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid           INTEGER NOT NULL,
    modseq        INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;

-- Exactly-once: a delivery key (pop3:<account>:<uidl>, imap:<account>:<folder>:<uidvalidity>:<uid>)
-- recorded per recipient user in the same transaction as the index row.
CREATE TABLE delivery_keys (
    key           TEXT NOT NULL,
    user          TEXT NOT NULL COLLATE NOCASE,
    created       INTEGER NOT NULL,
    PRIMARY KEY (key, user)
) WITHOUT ROWID;

-- What happened, for `zolder status` and the admin.
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    time          INTEGER NOT NULL,
    kind          TEXT NOT NULL,        -- 'deliver', 'fetch', 'relay', 'scan', ...
    subject       TEXT NOT NULL,        -- account, user, queue id
    text          TEXT NOT NULL
);
