"""Incoming webhooks: a secret URL per room that scripts post to as a named bot."""
