"""The pure core: KPI logic with no framework imports (no faust, kafka or prometheus_client).

Everything here takes time as integer epoch milliseconds passed in by the caller,
so tests control the clock and a replay of history behaves like live traffic.
"""
