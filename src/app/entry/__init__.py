"""Entry points, the composition root: create_app() and the orderstream CLI."""
