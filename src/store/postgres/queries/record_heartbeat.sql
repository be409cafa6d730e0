-- Worker process $1 is alive at $2.
INSERT INTO worker_instance (instance_id, started_at, heartbeat_at) VALUES ($1, $2, $2)
ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at
