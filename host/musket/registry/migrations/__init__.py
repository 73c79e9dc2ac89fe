"""Alembic migrations of the registry's schema; run by musket.registry.database.migrate()."""
