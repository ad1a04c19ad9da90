-- Each manager's confirmation password (確認用パスワード, seed 004): argon2 hash, wrong tries,
-- locked after too many; set by the manager on first use, reset only by the bank.
CREATE TABLE confirmations (
    holder TEXT PRIMARY KEY,
    corp_id TEXT NOT NULL,
    hash TEXT NOT NULL,
    failures INTEGER NOT NULL DEFAULT 0,
    locked INTEGER NOT NULL DEFAULT 0,
    set_at INTEGER NOT NULL
);
