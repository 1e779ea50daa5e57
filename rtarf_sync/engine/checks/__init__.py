"""Is the copy right, and how it is put right: reconciliation of deletes, verification,
repair, dead letters and their replay.
"""
