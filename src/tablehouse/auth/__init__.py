"""Accounts: users, sessions, API keys, one-time email tokens, login throttling."""
