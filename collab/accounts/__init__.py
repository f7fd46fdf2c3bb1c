"""Accounts: users, sign-in sessions, API tokens, invitations and roles."""
