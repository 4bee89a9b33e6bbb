"""WSGI entry point: `gunicorn wsgi:app`."""

from app.entry.factory import create_app

app = create_app()
