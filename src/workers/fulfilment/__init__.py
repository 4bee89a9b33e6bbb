"""Fulfilment: the process manager that coordinates orders and stock through events and commands
(process.py), its state per order (state.py) and its payment deadlines (deadlines.py)."""
