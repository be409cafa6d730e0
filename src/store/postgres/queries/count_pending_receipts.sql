-- Receipts held because they match no message (yet), for /metrics.
SELECT COUNT(*) FROM pending_receipt
