-- zolder schema, part 9 (imapd): a cache of each message's header, so FETCH of
-- header fields, ENVELOPE and SEARCH on headers are served from the index without
-- opening message files (Dovecot keeps the same in dovecot.index.cache); and
-- indexes that make "what changed since MODSEQ n" cheap in a big mailbox.
-- A released migration is never edited; add a new file instead.

-- The header of a message as the wire shows it: CRLF line ends, up to and including
-- the empty line that ends it (the whole message when it has none). Filled when a
-- message is stored, or when imapd first reads its header. A message's bytes never
-- change under its (mailbox, UID), so a row is valid until the message goes.
CREATE TABLE message_headers (
    mailbox_id    INTEGER NOT NULL,
    uid           INTEGER NOT NULL,
    header        BLOB NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);

-- Expunge, mailbox deletion and an mbox reset (UIDs start again at 1) all delete
-- message rows: the cached header goes with its row.
CREATE TRIGGER message_headers_gone AFTER DELETE ON messages
BEGIN
    DELETE FROM message_headers WHERE mailbox_id = old.mailbox_id AND uid = old.uid;
END;

-- After every command a session asks what changed since the MODSEQ it knows
-- (`db::spool::messages_changed_since`, `expunged_since`): without these, each ask
-- reads every row of the mailbox.
CREATE INDEX messages_modseq ON messages (mailbox_id, modseq);
CREATE INDEX expunged_modseq ON expunged (mailbox_id, modseq);
