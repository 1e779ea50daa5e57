"""Serving HTTP: the gunicorn worker that never waits on a client, the exposure check, the probes."""
