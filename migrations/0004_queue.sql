-- zolder schema, part 4: the outgoing queue (owned by src/queue, SQL in src/db/queue.rs).
-- One row per message (its body is the file queue/msg/<id>) and one per recipient.
-- A released migration is never edited; add a new file instead.

CREATE TABLE queue_messages (
    id            TEXT PRIMARY KEY,       -- queue id, also the file name under queue/msg/
    sender        TEXT NOT NULL,          -- envelope sender; '' = null sender <> (a bounce)
    arrival       INTEGER NOT NULL,       -- unix seconds, when accepted
    size          INTEGER NOT NULL,       -- bytes of the stored file
    source        TEXT NOT NULL,          -- 'submit:<peer>', 'sendmail:<user>', 'maildrop:<uid>', 'generated:<reason>'
    message_id    TEXT,                   -- Message-ID header, for logs and duplicate spotting
    envid         TEXT,                   -- DSN ENVID (RFC 3461), xtext-decoded
    ret           TEXT,                   -- DSN RET: 'FULL' | 'HDRS' | NULL
    auth_user     TEXT,                   -- SMTP AUTH login that submitted it
    warned        INTEGER NOT NULL DEFAULT 0  -- a delay warning was sent
);

-- state: 'queued' (waiting for its first/next attempt), 'inflight' (handed to a
-- transport; a crash leaves it so and start-up puts it back to 'queued'),
-- 'sent' (done), 'failed' (bounced or given up).
CREATE TABLE queue_recipients (
    message_id    TEXT NOT NULL REFERENCES queue_messages(id) ON DELETE CASCADE,
    rcpt          TEXT NOT NULL,          -- envelope recipient as accepted
    local         INTEGER NOT NULL,       -- 1 = local delivery pipeline, 0 = smarthost
    state         TEXT NOT NULL DEFAULT 'queued',
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  INTEGER NOT NULL,       -- unix seconds
    last_attempt  INTEGER,
    last_error    TEXT,                   -- last reply / reason, for `zolder queue` and DSNs
    notify        TEXT,                   -- DSN NOTIFY: 'NEVER' or a comma list of SUCCESS,FAILURE,DELAY; NULL = default
    orcpt         TEXT,                   -- DSN ORCPT (addr-type;address), as given
    PRIMARY KEY (message_id, rcpt)
) WITHOUT ROWID;

CREATE INDEX queue_recipients_due ON queue_recipients (state, next_attempt);
