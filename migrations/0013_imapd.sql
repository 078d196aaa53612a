-- zolder schema, part 13 (imapd): \Recent, subscriptions that outlive their mailbox,
-- and the display names SORT=DISPLAY sorts by.
-- A released migration is never edited; add a new file instead.

-- RFC 3501 §2.3.2: a message is \Recent in the first session that sees it. The UIDs
-- up to `recent_uid` have been taken by a read-write session; the ones above are
-- still recent for whoever selects the mailbox next.
ALTER TABLE mailboxes ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 0;

-- Subscriptions to names that have no mailbox (deleted while subscribed, or
-- subscribed before they were created; RFC 3501 §6.3.6, RFC 5258 §3.1
-- \NonExistent). A mailbox's own subscription is `mailboxes.subscribed`.
CREATE TABLE imap_subscriptions (
    user          TEXT NOT NULL COLLATE NOCASE,
    name          TEXT NOT NULL,
    PRIMARY KEY (user, name)
) WITHOUT ROWID;

-- SORT=DISPLAY (RFC 5957): the first From/To address's display name (else its
-- address), upper-cased. The cache is refilled on demand, so old rows go.
DELETE FROM sort_keys;
ALTER TABLE sort_keys ADD COLUMN display_from TEXT NOT NULL DEFAULT '';
ALTER TABLE sort_keys ADD COLUMN display_to TEXT NOT NULL DEFAULT '';
