-- Which pepper each API key's hash was made with (atlas.api.keys.pepper_id: a short fingerprint,
-- not the pepper), so `atlas-ops apikey list` shows the keys still on an old pepper and an operator
-- knows when api_key_pepper_previous can be dropped (issue 10). NULL: hashed before this column;
-- the API fills it in when the key is next used.
ALTER TABLE api_keys ADD COLUMN pepper_id TEXT;
