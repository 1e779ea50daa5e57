"""The sync core, in folders by role: `source/` reads the engine, `target/` writes pages into
PostgreSQL, `runs/` is a run (plan, lease, records), `checks/` verifies and repairs the copy.
`errors`, `retry`, `hits`, `fence` and `fastjson` are the vocabulary they share; `source/` and
`target/` never import each other, nor `runs/` or `checks/`. Nothing here imports Flask or APScheduler.
"""
