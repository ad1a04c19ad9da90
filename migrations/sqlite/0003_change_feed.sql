-- The change feed: every change that decides who is refused or with what role is appended here
-- in the same transaction as the change, so that every certgate process can apply changes since
-- the last one it saw instead of re-reading the registry. Each row carries the full new state of
-- what it names, so applying a row twice is harmless. Writers to the feed are serialised (SQLite
-- has one writer at a time), so rows commit in `seq` order.
CREATE TABLE changes (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    at            INTEGER NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('certificate', 'user', 'corporation', 'reload')),
    corp_id       TEXT,
    user_id       TEXT,
    -- user: the role and whether suspended or removed.
    role          TEXT    CHECK (role IS NULL OR role IN ('master', 'admin', 'general')),
    suspended     INTEGER CHECK (suspended IS NULL OR suspended IN (0, 1)),
    removed       INTEGER CHECK (removed IS NULL OR removed IN (0, 1)),
    -- corporation: whether in service and whether certificates are required.
    active        INTEGER CHECK (active IS NULL OR active IN (0, 1)),
    cert_required INTEGER CHECK (cert_required IS NULL OR cert_required IN (0, 1)),
    -- certificate: which, until when, revoked (when, why) and/or renewed.
    issuer_key    INTEGER,
    serial        TEXT,
    generation    TEXT,
    not_after     INTEGER,
    revoked_at    INTEGER,
    reason        TEXT,
    renewed       INTEGER CHECK (renewed IS NULL OR renewed IN (0, 1))
) STRICT;

-- Which CA issued a certificate, as the hot path keys it: the first 8 bytes of the SHA-256 of the
-- issuer Name's DER, as a signed integer (filled in by the registry for rows made before).
ALTER TABLE certificates ADD COLUMN issuer_key INTEGER;
-- When a renewal replaced this certificate (it stays valid unless revoked, but its sessions are
-- logged off).
ALTER TABLE certificates ADD COLUMN renewed_at INTEGER;

CREATE INDEX certificates_standing ON certificates (not_after)
    WHERE status = 'revoked' OR renewed_at IS NOT NULL;

-- Each CA generation's CRL: its number (so that numbers only grow whichever process signs), the
-- last one signed (served by every process), and the lease of the one process signing it.
CREATE TABLE crl_state (
    generation   TEXT    NOT NULL PRIMARY KEY,
    number       TEXT    NOT NULL DEFAULT '0',
    -- The last change of the feed the signed CRL includes: a signer that has not seen as far
    -- does not sign, so that the contents never go backwards.
    seq          INTEGER NOT NULL DEFAULT 0,
    der          BLOB,
    signed_at    INTEGER,
    lease_holder TEXT,
    lease_until  INTEGER NOT NULL DEFAULT 0
) STRICT;
