-- Whether any account has any opt-out (when none has, claims skip the check).
SELECT EXISTS (SELECT 1 FROM opt_out) AS any_opt_out
