-- Whether some message already carries provider $1's id $2 (an in-doubt lookup's candidate
-- that is another message's send is not this one's).
SELECT EXISTS (SELECT 1 FROM message WHERE provider = $1 AND provider_message_id = $2)
