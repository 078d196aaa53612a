-- zolder schema, part 7 (src/queue): find due recipients of ONE kind (local or
-- smarthost) without scanning the other kind. The runner asks "is local work due?"
-- each time a message is queued; with only (state, next_attempt) that walked every
-- queued smarthost recipient, so accepting N messages for the smarthost cost O(N²).
CREATE INDEX IF NOT EXISTS queue_recipients_kind_due
    ON queue_recipients (local, state, next_attempt);
