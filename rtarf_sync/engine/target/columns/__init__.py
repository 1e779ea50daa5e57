"""Typed columns beside `source`: the configured set and where its values are (column_set.py), each
PostgreSQL type's conversion and COPY encoding (pg_types.py), and the columns added to and filled in
the target table at start-up (schema.py)."""
