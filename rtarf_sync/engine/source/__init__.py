"""How the search engine is read: the clients, the reader (point in time or scroll),
slices and prefetch, page timings, and which indices the setting names.
"""
