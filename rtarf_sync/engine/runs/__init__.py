"""What a run is, who may run and what is recorded: the sync service, the run's plan,
the lease and its renewal, run history and the views of it, the result.
"""
