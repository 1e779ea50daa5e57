"""Typed columns beside `source`: the configured set and its conversions (column_set.py), added to
and filled in the target table at start-up (schema.py)."""
