"""Presence: who is available, busy, away or offline, and why."""
