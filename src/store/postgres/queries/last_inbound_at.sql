-- When number $3 last wrote to account $1 on channel $2 (its thread's last inbound message).
SELECT last_inbound_at FROM thread WHERE account_id = $1 AND channel = $2 AND phone_number = $3
