"""Storage: PostgreSQL (TimescaleDB when present) through psycopg 3 and a connection pool."""

from whistle.store.db import Database

__all__ = ["Database"]
