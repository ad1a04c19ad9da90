-- certificate.p12 files kept for a retried enrollment (a deliberate exception to "certgate keeps no
-- private keys"): the file exactly as it was sent, encrypted under the user's own PKCS#12
-- password, which certgate does not keep. Written in the transaction that consumes the permit, so
-- that a retry on any replica finds it; erased when the retry window closes, when the holder is
-- re-issued, and when the certificate is revoked.
CREATE TABLE enrollment_files (
    permit_id  INTEGER PRIMARY KEY REFERENCES permits (permit_id),
    p12        BLOB    NOT NULL CHECK (length(p12) > 0),
    expires_at INTEGER NOT NULL
) STRICT;
