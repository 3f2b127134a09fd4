"""Screens and dialogs shown over the main view."""
