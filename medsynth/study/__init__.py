"""Blinded reader study: storage (SQLAlchemy + Alembic), accounts, case assignment, rendering,
the service the Streamlit app calls, ratings export and a simulator of readers with known skill."""
