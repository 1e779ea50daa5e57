"""Checks: run modes and deletes, verification and repair, scope, bounded work."""
