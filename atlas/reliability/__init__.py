"""Pure reliability logic (backoff, breakers, buckets): clock and randomness come in as arguments."""
