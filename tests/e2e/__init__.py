"""End to end: real gunicorn, browsers, the demo, the documented examples."""
