"""The realtime fabric: frames, the event bus, live connections. Knows nothing of chat."""
