-- certgate registry, PostgreSQL dialect: the same tables, columns and rules as the SQLite
-- migrations in migrations/sqlite/ after all of them, so that one SQL serves both. Times are
-- BIGINT Unix seconds (UTC); flags are SMALLINT 0/1 decoded as integers; every integer column is
-- BIGINT so that both databases hand back the same type.

CREATE TABLE corporations (
    corp_id       TEXT     NOT NULL PRIMARY KEY
                  CHECK (length(corp_id) BETWEEN 1 AND 30 AND corp_id ~ '^[0-9A-Za-z]+$'),
    name          TEXT     NOT NULL CHECK (name <> ''),
    admin_email   TEXT     NOT NULL CHECK (admin_email LIKE '%_@_%'),
    cert_required BIGINT   NOT NULL CHECK (cert_required IN (0, 1)),
    status        TEXT     NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'suspended', 'closed')),
    created_at    BIGINT   NOT NULL
);

CREATE TABLE users (
    corp_id    TEXT   NOT NULL REFERENCES corporations (corp_id),
    user_id    TEXT   NOT NULL
               CHECK (length(user_id) BETWEEN 1 AND 30 AND user_id ~ '^[0-9A-Za-z]+$'),
    role       TEXT   NOT NULL CHECK (role IN ('master', 'admin', 'general')),
    email      TEXT   CHECK (email IS NULL OR email LIKE '%_@_%'),
    status     TEXT   NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (corp_id, user_id)
);

CREATE UNIQUE INDEX users_one_master ON users (corp_id) WHERE role = 'master';

CREATE TABLE permits (
    permit_id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    corp_id     TEXT   NOT NULL REFERENCES corporations (corp_id),
    user_id     TEXT,
    pin_hash    TEXT   NOT NULL CHECK (pin_hash LIKE '$_%'),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL CHECK (expires_at > created_at),
    failures    BIGINT NOT NULL DEFAULT 0 CHECK (failures >= 0),
    state       TEXT   NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'locked', 'used', 'superseded')),
    used_at     BIGINT,
    spki_sha256 TEXT   CHECK (spki_sha256 IS NULL OR spki_sha256 ~ '^[0-9a-f]{64}$'),
    FOREIGN KEY (corp_id, user_id) REFERENCES users (corp_id, user_id),
    CHECK ((state = 'used') = (used_at IS NOT NULL AND spki_sha256 IS NOT NULL))
);

CREATE UNIQUE INDEX permits_one_active ON permits (corp_id, COALESCE(user_id, '')) WHERE state = 'active';
CREATE INDEX permits_holder ON permits (corp_id, user_id);

CREATE TABLE certificates (
    cert_id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    serial            TEXT   NOT NULL UNIQUE
                      CHECK (length(serial) BETWEEN 2 AND 64 AND length(serial) % 2 = 0
                             AND serial ~ '^[0-9a-f]+$'
                             AND (serial = '00' OR serial NOT LIKE '00%')),
    issuer_generation TEXT   NOT NULL CHECK (issuer_generation <> ''),
    corp_id           TEXT   NOT NULL REFERENCES corporations (corp_id),
    user_id           TEXT,
    not_before        BIGINT NOT NULL,
    not_after         BIGINT NOT NULL CHECK (not_after > not_before),
    sha256            TEXT   NOT NULL UNIQUE CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    spki_sha256       TEXT   NOT NULL CHECK (spki_sha256 ~ '^[0-9a-f]{64}$'),
    der               BYTEA  NOT NULL CHECK (length(der) > 0),
    status            TEXT   NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
    issued_at         BIGINT NOT NULL,
    revoked_at        BIGINT,
    revocation_reason TEXT   CHECK (revocation_reason IN (
                          'unspecified', 'keyCompromise', 'cACompromise', 'affiliationChanged',
                          'superseded', 'cessationOfOperation', 'certificateHold',
                          'removeFromCRL', 'privilegeWithdrawn', 'aACompromise')),
    renewed_from      TEXT   REFERENCES certificates (serial),
    permit_id         BIGINT UNIQUE REFERENCES permits (permit_id),
    issuer_key        BIGINT,
    renewed_at        BIGINT,
    FOREIGN KEY (corp_id, user_id) REFERENCES users (corp_id, user_id),
    CHECK ((status = 'revoked') = (revoked_at IS NOT NULL AND revocation_reason IS NOT NULL)),
    CHECK (renewed_from IS NULL OR renewed_from <> serial)
);

CREATE INDEX certificates_holder ON certificates (corp_id, user_id);
CREATE INDEX certificates_renewed_from ON certificates (renewed_from);
CREATE INDEX certificates_revoked ON certificates (not_after) WHERE status = 'revoked';
CREATE INDEX certificates_standing ON certificates (not_after)
    WHERE status = 'revoked' OR renewed_at IS NOT NULL;

CREATE TABLE audit (
    audit_id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    corp_id     TEXT,
    target      TEXT   NOT NULL,
    result      TEXT   NOT NULL,
    client_addr TEXT
);

CREATE INDEX audit_corp ON audit (corp_id, at, audit_id);
CREATE INDEX audit_at ON audit (at, audit_id);

CREATE TABLE enrollment_files (
    permit_id  BIGINT PRIMARY KEY REFERENCES permits (permit_id),
    p12        BYTEA  NOT NULL CHECK (length(p12) > 0),
    expires_at BIGINT NOT NULL
);

-- Writers to the feed take a transaction-level advisory lock first (see the SQLite migration's
-- comment and store/postgres.rs), so that sequence values commit in order.
CREATE TABLE changes (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            BIGINT NOT NULL,
    kind          TEXT   NOT NULL CHECK (kind IN ('certificate', 'user', 'corporation', 'reload')),
    corp_id       TEXT,
    user_id       TEXT,
    role          TEXT   CHECK (role IS NULL OR role IN ('master', 'admin', 'general')),
    suspended     BIGINT CHECK (suspended IS NULL OR suspended IN (0, 1)),
    removed       BIGINT CHECK (removed IS NULL OR removed IN (0, 1)),
    active        BIGINT CHECK (active IS NULL OR active IN (0, 1)),
    cert_required BIGINT CHECK (cert_required IS NULL OR cert_required IN (0, 1)),
    issuer_key    BIGINT,
    serial        TEXT,
    generation    TEXT,
    not_after     BIGINT,
    revoked_at    BIGINT,
    reason        TEXT,
    renewed       BIGINT CHECK (renewed IS NULL OR renewed IN (0, 1))
);

CREATE TABLE crl_state (
    generation   TEXT   NOT NULL PRIMARY KEY,
    number       TEXT   NOT NULL DEFAULT '0',
    seq          BIGINT NOT NULL DEFAULT 0,
    der          BYTEA,
    signed_at    BIGINT,
    lease_holder TEXT,
    lease_until  BIGINT NOT NULL DEFAULT 0
);
