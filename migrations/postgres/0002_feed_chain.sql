-- Each change names the one before it in the feed (see the SQLite migration 0004): writers hold
-- the feed's advisory lock, so the row before is the last committed one.
ALTER TABLE changes ADD COLUMN prev_seq BIGINT;

-- Finding certificates whose issuer key is still to be filled in (once, at start) must not scan
-- a million rows at every start of the CLI.
CREATE INDEX certificates_without_issuer_key ON certificates (cert_id) WHERE issuer_key IS NULL;
