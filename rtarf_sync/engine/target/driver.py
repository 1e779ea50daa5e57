"""The psycopg connection under a SQLAlchemy one, for the statements a page sends straight to the driver.

A page's hot statements (the lookup, the fence, COPY, the counts and cursor) go through psycopg
itself, inside the very transaction SQLAlchemy opened: building and binding them through
SQLAlchemy cost more Python time than the server spent running them. Their errors are wrapped
as SQLAlchemy's, so one handler sees every database error.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Iterator

import psycopg
import sqlalchemy as sa


def driver_of(connection: sa.Connection) -> psycopg.Connection[object]:
    """The psycopg connection under a SQLAlchemy connection, inside the same transaction."""
    driver = connection.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    return driver


def pipelined(driver: psycopg.Connection[object], pipeline: bool) -> AbstractContextManager[object]:
    """Send the statements of the block without waiting for each answer (pipeline mode), if asked.

    Only where it saves a round trip: the mode costs its own Python time, and while the reading
    thread decodes the next page every extra wait for the interpreter counts.
    """
    return driver.pipeline() if pipeline else nullcontext()


@contextmanager
def driver_errors(statement: str) -> Iterator[None]:
    """Wrap driver errors as SQLAlchemy would, so one handler sees every database error."""
    try:
        yield
    except psycopg.Error as error:
        raise sa.exc.DBAPIError.instance(statement, None, error, psycopg.Error) from error
