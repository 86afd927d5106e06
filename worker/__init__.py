"""A long-lived process, one per GPU: loads its model once and runs jobs from its own queue."""
