"""Turns queue depth into running workers: measure, decide, act."""
