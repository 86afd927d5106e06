"""The HTTP front door: submit, poll, wait, cancel; model and worker status."""
