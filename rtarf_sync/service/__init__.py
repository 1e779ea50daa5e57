"""The scheduler wrapper, its job, its stats and the Flask extension that holds it."""
