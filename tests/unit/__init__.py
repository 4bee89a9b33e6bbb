"""Unit tests: pure, no PostgreSQL or Redis; `pytest tests/unit` runs them in seconds."""
