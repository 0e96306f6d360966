"""The store's revisions, oldest first by number (Alembic reads them; nothing imports them)."""
