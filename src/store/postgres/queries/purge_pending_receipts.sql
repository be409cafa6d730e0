-- Drops held receipts received before $1 that still match no message: none of our sends.
DELETE FROM pending_receipt WHERE received_at < $1
