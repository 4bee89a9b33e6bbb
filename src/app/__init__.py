"""Composition root and shared kernel of orderstream."""
