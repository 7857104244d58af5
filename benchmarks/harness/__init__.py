"""`kpi bench`: the worker against the raw consumer ceiling and Quix Streams, in one run.

Modules, in the order a run uses them: `dataset` (the pre-loaded topics), `ceiling` (a
plain aiokafka consumer), `processes` (the worker and the peer as subprocesses, and how
to tell they are done), `freshness` (produce at a fixed rate, watch /metrics),
`state` (memory per open ticket, recovery after kill -9, scrape time), `report` (the
table, the JSON file, the plot) and `run` (the whole sequence).
"""
