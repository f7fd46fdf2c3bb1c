"""Calls: ringing, who is in a call, the signaling between browsers and the media server."""
