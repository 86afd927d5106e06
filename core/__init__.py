"""Shared pieces of Tidal: settings, Redis key names, the job record and the store."""
