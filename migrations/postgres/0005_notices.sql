-- Expiry notices (issue 10): each (certificate, threshold) claimed before it is sent and marked
-- sent after, so that it goes out once across restarts and replicas.
CREATE TABLE notices (
    serial TEXT NOT NULL,
    threshold_days INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('claimed', 'sent')),
    claimed_at BIGINT NOT NULL,
    sent_at BIGINT,
    message_id TEXT NOT NULL,
    PRIMARY KEY (serial, threshold_days)
);
-- The certificates that may need a notice: active, not replaced, by expiry.
CREATE INDEX certificates_expiring ON certificates (not_after)
    WHERE status = 'active' AND renewed_at IS NULL;
