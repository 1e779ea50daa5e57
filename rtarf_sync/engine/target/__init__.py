"""How a page is written to PostgreSQL: the sink, rows and the COPY encoder, the page's
bookkeeping (fence, counts, cursor), table definitions and migrations.
"""
