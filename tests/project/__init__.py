"""The repository itself: docs, locks, installs, deployment files."""
