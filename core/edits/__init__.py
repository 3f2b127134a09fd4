"""Edits: small objects that apply and undo themselves, their registry, history and checks."""
