-- zolder schema, part 11 (inbound, issue 17): greylisting on port 25.
-- A released migration is never edited; add a new file instead.

-- One (client network, envelope sender, recipient) triple. `net` is the client's /24
-- (IPv4) or /64 (IPv6) so a sender's outgoing pool may retry from a sibling address;
-- `sender` is '' for the null sender. A triple passes once `first_seen + delay` is
-- over and it is retried; `passed` is then set and `last_seen` keeps it alive until
-- it expires (`greylist_expire_days`).
CREATE TABLE greylist (
    net         TEXT NOT NULL,
    sender      TEXT NOT NULL,
    rcpt        TEXT NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    passed      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (net, sender, rcpt)
) WITHOUT ROWID;
CREATE INDEX greylist_last_seen ON greylist (last_seen);
