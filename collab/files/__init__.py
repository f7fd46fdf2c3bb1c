"""Files attached to chat messages: uploads streamed to disk, stored by content, served safely."""
