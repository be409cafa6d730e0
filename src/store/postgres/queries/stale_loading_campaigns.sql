-- Loading campaigns nobody has written to since $1: their upload died with its process.
SELECT campaign_id FROM campaign WHERE status = 'loading' AND updated_at < $1
