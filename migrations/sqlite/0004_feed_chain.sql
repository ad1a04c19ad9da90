-- Each change names the one before it in the feed (0 for the first): a process that receives
-- changes pushed through Redis applies one only when it follows the last one it applied, and
-- otherwise reads the missing ones from here. (Sequence numbers may have gaps, from rolled-back
-- transactions, so a gap in numbers alone says nothing.) Rows written before have none.
ALTER TABLE changes ADD COLUMN prev_seq INTEGER;

-- Finding certificates whose issuer key is still to be filled in (once, at start) must not scan
-- a million rows at every start of the CLI.
CREATE INDEX certificates_without_issuer_key ON certificates (cert_id) WHERE issuer_key IS NULL;
