"""Write side: the Order aggregate, command handlers and command endpoints."""
