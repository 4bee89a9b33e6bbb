"""Processes that move events: the outbox relay and consumer-group projectors. No business rules."""
