"""collab: self-hosted chat, presence and calls."""

__version__ = "0.1.0"
