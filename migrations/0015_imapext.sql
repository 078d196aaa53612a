-- zolder schema, part 15 (imapd): URLAUTH (RFC 4467) mailbox access keys. A key
-- signs the URLAUTH-authorized URLs GENURLAUTH hands out for one user's mailbox;
-- RESETKEY replaces it (every URL signed with the old key stops working).
-- A released migration is never edited; add a new file instead.
CREATE TABLE urlauth_keys (
    user     TEXT NOT NULL,
    mailbox  TEXT NOT NULL,
    key      BLOB NOT NULL,
    created  INTEGER NOT NULL,
    PRIMARY KEY (user, mailbox)
);
