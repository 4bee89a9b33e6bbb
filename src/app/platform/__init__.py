"""The HTTP platform: configuration, database, Redis clients, auth, limits, problems, metrics, logs."""
