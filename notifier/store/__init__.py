"""The database's queries, one module per subject. Services and routes call these with a
Session; the store imports only the models and SQLAlchemy, never a service."""
