-- Whether account ?1 has any opt-out at all (most have none: skips the per-number lookups).
SELECT EXISTS (SELECT 1 FROM opt_out WHERE account_id = ?1) AS any_opt_out
