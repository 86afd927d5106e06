"""Example handlers that ship with Tidal."""
