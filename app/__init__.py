"""Twofold: a double-entry ledger service."""
