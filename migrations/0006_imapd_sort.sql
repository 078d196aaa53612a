-- zolder schema, part 6 (imapd): SORT/THREAD keys cached per message.
-- A released migration is never edited; add a new file instead.

-- What SORT and THREAD (RFC 5256) need of a message's header, parsed once: a UID's
-- header never changes, so a row is valid for as long as its message row exists
-- (the trigger removes it with the message; ON DELETE CASCADE with the mailbox).
CREATE TABLE sort_keys (
    mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid           INTEGER NOT NULL,
    sent          INTEGER,              -- Date: header, unix seconds; NULL = none that parses
    subject       TEXT NOT NULL,        -- base subject, upper-cased (RFC 5256 §2.1)
    is_reply      INTEGER NOT NULL,     -- base-subject extraction removed Re:/Fwd:
    from_addr     TEXT NOT NULL,        -- addr-mailbox of the first address, upper-cased
    to_addr       TEXT NOT NULL,
    cc_addr       TEXT NOT NULL,
    message_id    TEXT,
    refs          TEXT NOT NULL,        -- References (else first In-Reply-To), space-separated
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;

CREATE TRIGGER sort_keys_follow_messages AFTER DELETE ON messages BEGIN
    DELETE FROM sort_keys WHERE mailbox_id = old.mailbox_id AND uid = old.uid;
END;
