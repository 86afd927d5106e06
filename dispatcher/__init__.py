"""Moves jobs from model queues to per-worker queues."""
