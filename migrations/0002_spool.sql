-- zolder schema, part 2 (spool): what the Maildir/mbox index needs beyond 0001.
-- A released migration is never edited; add a new file instead.

-- One Maildir file is indexed at most once per mailbox: a delivery racing a directory
-- sync (or a crash-recovery pass) then finds the existing row instead of a duplicate.
CREATE UNIQUE INDEX messages_file ON messages (mailbox_id, file) WHERE file IS NOT NULL;

-- A per-user change counter, bumped by every transaction that changes that user's
-- mailboxes. Another process (the daemon's IDLE) polls this one row to notice mail
-- that `zolder deliver` stored, without scanning mailboxes.
CREATE TABLE spool_changes (
    user          TEXT PRIMARY KEY COLLATE NOCASE,
    counter       INTEGER NOT NULL
) WITHOUT ROWID;

-- mbox appends in flight: written (committed) before the bytes are appended, deleted in
-- the transaction that indexes them. A row found while holding the mbox lock belongs to
-- a writer that died: if the bytes are complete (same length and SHA-256) they are
-- indexed and the delivery keys recorded; otherwise the file is truncated back to
-- `start`, so a half-written message is never visible.
CREATE TABLE mbox_pending (
    id            INTEGER PRIMARY KEY,
    mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    start         INTEGER NOT NULL,     -- where this append began (file length before it)
    offset        INTEGER NOT NULL,     -- message bytes start (after the From_ line)
    length        INTEGER NOT NULL,     -- stored (quoted) message length
    total         INTEGER NOT NULL,     -- bytes appended in all (separator, From_ line, message, blank line)
    sha256        TEXT NOT NULL,        -- of the appended bytes [start, start + total)
    size          INTEGER NOT NULL,
    internal_date INTEGER NOT NULL,
    flags         TEXT NOT NULL,
    message_id    TEXT,
    delivery_key  TEXT                  -- recorded for the mailbox's user when indexed
);

-- The last UIDVALIDITY handed out per user, so a mailbox deleted and created again
-- never gets a UIDVALIDITY it had before (clients would trust stale caches).
CREATE TABLE uidvalidity_seq (
    user          TEXT PRIMARY KEY COLLATE NOCASE,
    last          INTEGER NOT NULL
) WITHOUT ROWID;
