-- An account's own answers to STOP and HELP (issue 9). NULL: the deployment's
-- (inbound.stop_reply / inbound.help_reply); '': no answer. Same as the SQLite migration.
ALTER TABLE account ADD COLUMN stop_reply TEXT;
ALTER TABLE account ADD COLUMN help_reply TEXT;
