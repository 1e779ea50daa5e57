"""Reading the engine: paging, engine choice, faults, TLS."""
