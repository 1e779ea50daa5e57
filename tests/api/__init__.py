"""The HTTP API through the app factory."""
