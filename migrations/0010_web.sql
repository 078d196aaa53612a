-- zolder schema, part 10 (web): webmail sessions, the webmail's settings page, and
-- the per-hour counters the admin page charts.
-- A released migration is never edited; add a new file instead.

-- One signed-in browser. `token_hash` is SHA-256 of the cookie value (hex), so a copy
-- of the database does not hold usable cookies. `csrf` is the value every form of the
-- session carries. A row unused for `[web] session_idle` seconds is deleted.
CREATE TABLE web_sessions (
    token_hash    TEXT PRIMARY KEY,
    user          TEXT NOT NULL,
    csrf          TEXT NOT NULL,
    created       INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL
);
CREATE INDEX web_sessions_last_seen ON web_sessions (last_seen);

-- Secrets of the web server that must survive a restart (the key that binds the
-- login form's csrf value to its cookie).
CREATE TABLE web_secrets (
    name          TEXT PRIMARY KEY,
    value         TEXT NOT NULL
);

-- What the settings page last saved for a user (JSON: vacation and filters); the
-- Sieve script it writes is derived from this.
CREATE TABLE web_settings (
    user          TEXT PRIMARY KEY,
    json          TEXT NOT NULL,
    updated       INTEGER NOT NULL
);

-- Event counters per hour (`hour` = unix time / 3600): `fetched`, `delivered`,
-- `sent` are added to by fetch, local delivery and the relay; `queue` holds the
-- largest queue length seen in the hour. Rows older than a year are deleted.
CREATE TABLE stats_hourly (
    hour          INTEGER NOT NULL,
    name          TEXT NOT NULL,
    value         INTEGER NOT NULL,
    PRIMARY KEY (hour, name)
);
