"""Alembic environment and versions for the guestwatch schema."""
