-- zolder schema, part 8: OAuth2 tokens of ISP accounts.
-- A released migration is never edited; add a new file instead.

-- Per account: the refresh token to use next (the endpoint may hand out a new one with
-- every refresh, RFC 6749 §6, and then refuse the old one) and the last access token.
-- `origin` is the SHA-256 of the refresh token in the config this chain started from:
-- when the admin puts a new token in the config, it wins over the stored one.
CREATE TABLE fetch_oauth2 (
    account        TEXT PRIMARY KEY,
    origin         TEXT NOT NULL,
    refresh_token  TEXT NOT NULL,
    access_token   TEXT,
    expires_at     INTEGER,              -- unix seconds
    updated_at     INTEGER NOT NULL      -- unix seconds
);
