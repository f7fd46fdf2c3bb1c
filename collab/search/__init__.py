"""Search: full-text search of the messages a user may read."""
