"""Saving: weights written as one atomic, verified transaction."""
