"""History store: SQLAlchemy models, the repository and the batching writer."""
