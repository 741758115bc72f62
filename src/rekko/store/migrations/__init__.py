"""Alembic migrations of the service database, run in code by ``upgrade_database``."""
