"""Read-only views of the sync state as PostgreSQL holds it: the status page, metrics and the CLI read them."""
