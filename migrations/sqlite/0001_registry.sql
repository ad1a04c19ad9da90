-- certgate registry, SQLite dialect (a PostgreSQL twin will live in migrations/postgres/).
--
-- Times are INTEGER unix seconds (UTC) so that both backends share one representation.
-- A NULL user_id in permits and certificates means the corporation's administrator: that
-- certificate's CN is the corporation ID alone, and the administrator has no row in `users`.
-- Composite foreign keys with a NULL column are not checked (MATCH SIMPLE), so every
-- (corp_id, user_id) pair also carries a plain corp_id foreign key.
-- Tables are STRICT so that a wrongly typed bind is an error, not a silent coercion.

CREATE TABLE corporations (
    corp_id       TEXT    NOT NULL PRIMARY KEY
                  CHECK (length(corp_id) BETWEEN 1 AND 30 AND corp_id NOT GLOB '*[^0-9A-Za-z]*'),
    name          TEXT    NOT NULL CHECK (name <> ''),
    admin_email   TEXT    NOT NULL CHECK (admin_email LIKE '%_@_%'),
    cert_required INTEGER NOT NULL CHECK (cert_required IN (0, 1)),
    status        TEXT    NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'suspended', 'closed')),
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
    corp_id    TEXT    NOT NULL REFERENCES corporations (corp_id),
    user_id    TEXT    NOT NULL
               CHECK (length(user_id) BETWEEN 1 AND 30 AND user_id NOT GLOB '*[^0-9A-Za-z]*'),
    role       TEXT    NOT NULL CHECK (role IN ('master', 'admin', 'general')),
    email      TEXT    CHECK (email IS NULL OR email LIKE '%_@_%'),
    status     TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (corp_id, user_id)
) STRICT;

-- The master user owns user management; the manuals allow one per corporation.
CREATE UNIQUE INDEX users_one_master ON users (corp_id) WHERE role = 'master';

CREATE TABLE permits (
    permit_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    corp_id     TEXT    NOT NULL REFERENCES corporations (corp_id),
    user_id     TEXT,
    -- PHC string (argon2) made by lifecycle; the PIN itself never reaches the store.
    pin_hash    TEXT    NOT NULL CHECK (pin_hash GLOB '$?*'),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL CHECK (expires_at > created_at),
    failures    INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    state       TEXT    NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'locked', 'used', 'superseded')),
    used_at     INTEGER,
    -- SHA-256 of the SubjectPublicKeyInfo presented when the permit was used: an interrupted
    -- enrollment retried with the same key gets the same certificate back.
    spki_sha256 TEXT    CHECK (spki_sha256 IS NULL
                               OR (length(spki_sha256) = 64 AND spki_sha256 NOT GLOB '*[^0-9a-f]*')),
    FOREIGN KEY (corp_id, user_id) REFERENCES users (corp_id, user_id),
    CHECK ((state = 'used') = (used_at IS NOT NULL AND spki_sha256 IS NOT NULL))
) STRICT;

-- Issuing a permit supersedes the older ones, so at most one can be presented per identity.
CREATE UNIQUE INDEX permits_one_active ON permits (corp_id, ifnull(user_id, '')) WHERE state = 'active';
CREATE INDEX permits_holder ON permits (corp_id, user_id);

CREATE TABLE certificates (
    -- Issue order: "the latest certificate" is the highest cert_id, never a timestamp tie.
    cert_id           INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Lowercase hex, leading zero bytes removed, as identity::serial_hex renders it.
    serial            TEXT    NOT NULL UNIQUE
                      CHECK (length(serial) BETWEEN 2 AND 64 AND length(serial) % 2 = 0
                             AND serial NOT GLOB '*[^0-9a-f]*'
                             AND (serial = '00' OR serial NOT GLOB '00*')),
    issuer_generation TEXT    NOT NULL CHECK (issuer_generation <> ''),
    corp_id           TEXT    NOT NULL REFERENCES corporations (corp_id),
    user_id           TEXT,
    not_before        INTEGER NOT NULL,
    not_after         INTEGER NOT NULL CHECK (not_after > not_before),
    sha256            TEXT    NOT NULL UNIQUE
                      CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    spki_sha256       TEXT    NOT NULL
                      CHECK (length(spki_sha256) = 64 AND spki_sha256 NOT GLOB '*[^0-9a-f]*'),
    -- The certificate itself, so that a retried enrollment returns the very same bytes.
    der               BLOB    NOT NULL CHECK (length(der) > 0),
    status            TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    issued_at         INTEGER NOT NULL,
    revoked_at        INTEGER,
    revocation_reason TEXT    CHECK (revocation_reason IN (
                          'unspecified', 'keyCompromise', 'cACompromise', 'affiliationChanged',
                          'superseded', 'cessationOfOperation', 'certificateHold',
                          'removeFromCRL', 'privilegeWithdrawn', 'aACompromise')),
    renewed_from      TEXT    REFERENCES certificates (serial),
    -- One permit yields at most one certificate: a used permit and its certificate are
    -- written in the same transaction, so neither exists without the other.
    permit_id         INTEGER UNIQUE REFERENCES permits (permit_id),
    FOREIGN KEY (corp_id, user_id) REFERENCES users (corp_id, user_id),
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL AND revocation_reason IS NOT NULL)),
    CHECK (renewed_from IS NULL OR renewed_from <> serial)
) STRICT;

CREATE INDEX certificates_holder ON certificates (corp_id, user_id);
CREATE INDEX certificates_renewed_from ON certificates (renewed_from);
CREATE INDEX certificates_revoked ON certificates (not_after) WHERE status = 'revoked';

CREATE TABLE audit (
    audit_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    -- No foreign key: a refusal naming an unknown corporation is audited too.
    corp_id     TEXT,
    target      TEXT    NOT NULL,
    result      TEXT    NOT NULL,
    client_addr TEXT
) STRICT;

CREATE INDEX audit_corp ON audit (corp_id, at, audit_id);
CREATE INDEX audit_at ON audit (at, audit_id);
