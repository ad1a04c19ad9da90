-- The user's name (利用者名), shown in the status table; optional.
ALTER TABLE users ADD COLUMN name TEXT;
