"""Chat: rooms, direct messages, messages, history and resume."""
