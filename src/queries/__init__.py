"""Read side: projection tables, the projectors that fill them, and query endpoints (GET only)."""
