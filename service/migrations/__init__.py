"""Alembic migrations; run them with ``tierline migrate``."""
