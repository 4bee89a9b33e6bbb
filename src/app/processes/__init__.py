"""Running the service: supervisord from the Procfile, the embedded servers, the launcher."""
