"""What every request must be before a route runs: the bearer token (auth), the request guards
(origin, body type, size and depth), and error answers that never echo what the caller sent.
"""
