"""HTTP API: the /scheduler routes, health and readiness, metrics, auth and JSON errors."""
