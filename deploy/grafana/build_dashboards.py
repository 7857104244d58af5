"""The Grafana dashboards of kpi-stream, generated from the panel lists below.

    python deploy/grafana/build_dashboards.py          # writes deploy/grafana/dashboards/*.json
    python deploy/grafana/build_dashboards.py --check  # exit 1 when a committed file differs
    python deploy/grafana/build_dashboards.py --doc    # the panel tables of docs/dashboards.md

Plain dicts to JSON, standard library only. A panel is defined once, here: its title,
unit, queries and a description of what it shows and how to read it. The JSON written
to deploy/grafana/dashboards/ is committed; Grafana's file provider loads it
(deploy/grafana/provisioning/dashboards/kpi-stream.yml). Every panel reads the data
source of the `datasource` variable; the queue, priority, channel, SLA, topic and worker
filters are multi-value variables whose "All" is the regex `.*`. The PromQL reads the
families of docs/metrics.md and, where one fits, a recording rule of
deploy/prometheus/rules/recording.yml (tests/unit/test_grafana_dashboards.py checks
both; tests/integration/test_dashboards.py runs every query against a real Prometheus).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Json = dict[str, Any]

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["kpi-stream"]

# Label matchers of the template variables.
HD = 'queue=~"$queue",priority=~"$priority"'
CH = 'channel=~"$channel"'
SLA = f'sla=~"$sla",{HD}'
TOPIC = 'topic=~"$topic",instance=~"$instance"'
INST = 'instance=~"$instance"'
RATE = "$__rate_interval"
# Burn rate = error ratio / the error ratio the objective allows (1 - objective).
ALLOWED = "on (sla) group_left () (1 - kpistream:sla_objective:ratio)"

GREEN, YELLOW, RED, BLUE = "green", "yellow", "red", "blue"
Steps = list[tuple[float | None, str]]
GOOD_RATIO: Steps = [(None, RED), (0.9, YELLOW), (0.95, GREEN)]
ANY_IS_BAD: Steps = [(None, GREEN), (1, RED)]


@dataclass(frozen=True)
class Q:
    """One query of a panel: its PromQL and the legend of its series."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Row:
    title: str
    panels: list[Json]


# --- panels ----------------------------------------------------------------------------


def _thresholds(steps: Steps | None) -> Json:
    steps = steps or [(None, GREEN)]
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def _targets(queries: tuple[Q | str, ...], *, instant: bool, table: bool = False) -> list[Json]:
    out = []
    for i, q in enumerate(queries):
        query = q if isinstance(q, Q) else Q(q)
        target: Json = {
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": query.expr,
            "legendFormat": query.legend or "__auto",
            "range": not instant,
            "instant": instant,
            "refId": chr(ord("A") + i),
        }
        if table:
            target["format"] = "table"
        out.append(target)
    return out


def _panel(kind: str, title: str, unit: str, doc: str, w: int, h: int) -> Json:
    return {
        "type": kind,
        "title": title,
        "description": doc,
        "datasource": DATASOURCE,
        "gridPos": {"h": h, "w": w, "x": 0, "y": 0},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
    }


def ts(
    title: str,
    unit: str,
    *queries: Q | str,
    doc: str,
    w: int = 12,
    h: int = 8,
    lo: float | None = None,
    hi: float | None = None,
    stack: bool = False,
    lines: Steps | None = None,
) -> Json:
    """A time series (range queries); `lines` draws thresholds as lines (alert levels,
    objectives); `lo`/`hi` fix the axis."""
    p = _panel("timeseries", title, unit, doc, w, h)
    defaults = p["fieldConfig"]["defaults"]
    defaults["color"] = {"mode": "palette-classic"}
    defaults["custom"] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 25 if stack else 8,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": "dashed" if lines else "off"},
    }
    defaults["thresholds"] = _thresholds(lines)
    for key, value in (("min", lo), ("max", hi)):
        if value is not None:
            defaults[key] = value
    p["options"] = {
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    p["targets"] = _targets(queries, instant=False)
    return p


def _reduce() -> Json:
    return {"calcs": ["lastNotNull"], "fields": "", "values": False}


def stat(
    title: str,
    unit: str,
    *queries: Q | str,
    doc: str,
    w: int = 4,
    h: int = 4,
    steps: Steps | None = None,
    mappings: list[Json] | None = None,
    decimals: int | None = None,
) -> Json:
    """The newest value of each series (instant queries), coloured by `steps`."""
    p = _panel("stat", title, unit, doc, w, h)
    defaults = p["fieldConfig"]["defaults"]
    defaults["color"] = {"mode": "thresholds"}
    defaults["thresholds"] = _thresholds(steps or [(None, BLUE)])
    defaults["mappings"] = mappings or []
    if decimals is not None:
        defaults["decimals"] = decimals
    p["options"] = {
        "reduceOptions": _reduce(),
        "colorMode": "value",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": "auto",
    }
    p["targets"] = _targets(queries, instant=True)
    return p


def gauge(
    title: str,
    unit: str,
    *queries: Q | str,
    doc: str,
    w: int = 6,
    h: int = 6,
    steps: Steps | None = None,
) -> Json:
    """A gauge from 0 to 1 (instant queries)."""
    p = _panel("gauge", title, unit, doc, w, h)
    defaults = p["fieldConfig"]["defaults"]
    defaults.update(min=0, max=1, color={"mode": "thresholds"})
    defaults["thresholds"] = _thresholds(steps)
    p["options"] = {
        "reduceOptions": _reduce(),
        "showThresholdLabels": False,
        "showThresholdMarkers": True,
    }
    p["targets"] = _targets(queries, instant=True)
    return p


def table(
    title: str,
    unit: str,
    *queries: Q | str,
    doc: str,
    columns: dict[str, tuple[str, str]] | None = None,
    w: int = 12,
    h: int = 8,
    steps: Steps | None = None,
) -> Json:
    """An instant table: one row per label set, one value column per query (merged);
    `columns` names and units them (refId -> (title, unit))."""
    p = _panel("table", title, unit, doc, w, h)
    defaults = p["fieldConfig"]["defaults"]
    defaults["thresholds"] = _thresholds(steps)
    if steps:
        defaults["custom"] = {"cellOptions": {"type": "color-text"}}
    value = "Value" if len(queries) == 1 else "Value #{}"
    renames: Json = {}
    for ref, (name, col_unit) in (columns or {}).items():
        renames[value.format(ref)] = name
        # Overrides see the fields as the transformations left them: renamed.
        p["fieldConfig"]["overrides"].append(
            {
                "matcher": {"id": "byName", "options": name},
                "properties": [{"id": "unit", "value": col_unit}],
            }
        )
    p["options"] = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    p["transformations"] = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {"excludeByName": {"Time": True}, "renameByName": renames}},
    ]
    p["targets"] = _targets(queries, instant=True, table=True)
    return p


def _mapping(values: dict[str, tuple[str, str]]) -> list[Json]:
    options = {
        v: {"text": t, "color": c, "index": i} for i, (v, (t, c)) in enumerate(values.items())
    }
    return [{"type": "value", "options": options}]


YES_NO = _mapping({"0": ("no", GREEN), "1": ("yes", RED)})
UP_DOWN = _mapping({"0": ("DOWN", RED), "1": ("UP", GREEN)})


# --- template variables ----------------------------------------------------------------


def datasource_var() -> Json:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"selected": False, "text": "Prometheus", "value": "kpi-prometheus"},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def query_var(name: str, label: str, query: str, *, current: str | None = None) -> Json:
    """A label_values() variable: several values or All (the regex `.*`), or with
    `current` one value at a time."""
    every = current is None
    if every:
        selected: Json = {"selected": True, "text": ["All"], "value": ["$__all"]}
    else:
        selected = {"selected": False, "text": current, "value": current}
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": query,
        "current": selected,
        "hide": 0,
        "includeAll": every,
        "multi": every,
        **({"allValue": ".*"} if every else {}),
        "options": [],
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "skipUrlSync": False,
    }


QUEUE = query_var("queue", "Queue", "label_values(kpistream_tickets_created_total, queue)")
PRIORITY = query_var(
    "priority", "Priority", "label_values(kpistream_tickets_created_total, priority)"
)
CHANNEL = query_var("channel", "Channel", "label_values(kpistream_orders_placed_total, channel)")
WINDOW = query_var(
    "window",
    "Window",
    "label_values(kpistream_first_response_window_end_timestamp_seconds, window)",
    current="1h",
)
SLA_VAR = query_var("sla", "SLA", "label_values(kpistream_sla_total, sla)")
TOPIC_VAR = query_var(
    "topic",
    "Topic",
    'label_values({__name__=~"kpistream_events_total|kpistream_partitions_owned"}, topic)',
)
INSTANCE = query_var("instance", "Worker", 'label_values(up{job="kpi-stream"}, instance)')


# --- PromQL ----------------------------------------------------------------------------


def series(name: str, *matchers: str) -> str:
    """A series selector: `name{m1,m2}`, or the bare name without matchers."""
    joined = ",".join(m for m in matchers if m)
    return f"{name}{{{joined}}}" if joined else name


def ratio(family: str, good: str, sel: str, window: str, by: str = "") -> str:
    """sum(increase(good)) / sum(increase(all)) of a counter family over `window`."""
    grouping = f" by ({by})" if by else ""
    return (
        f"sum{grouping} (increase({series(family, sel, good)}[{window}]))"
        f" / sum{grouping} (increase({series(family, sel)}[{window}]))"
    )


def quantile(q: float, family: str, sel: str, window: str, by: str = "") -> str:
    """The q-quantile of a histogram family over `window`, summed over workers."""
    grouping = f"le, {by}" if by else "le"
    buckets = series(f"{family}_bucket", sel)
    return f"histogram_quantile({q}, sum by ({grouping}) (rate({buckets}[{window}])))"


def per_s(family: str, sel: str, by: str = "") -> str:
    """The per-second rate of a counter over $__rate_interval, summed over workers."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({series(family, sel)}[{RATE}]))"


def le(bound: str) -> str:
    """A bucket bound matcher for both spellings, "3600.0" (Prometheus 2) and "3600" (3)."""
    return f'le=~"{bound}(\\\\.0)?"'


def burn(window: str) -> str:
    """The burn rate of the recording rule of `window`, per SLA, queue and priority."""
    return f"sla_queue_priority:kpistream_sla_errors:ratio_rate{window}{{{SLA}}} / {ALLOWED}"


def budget_30d() -> str:
    """1 - (breached / all over 30 days) / (1 - objective), per SLA; an SLA without a
    breach has its whole budget (the `or` keeps it from vanishing)."""
    breached = f'sum by (sla) (increase(kpistream_sla_total{{{SLA},result="breached"}}[30d]))'
    every = f"sum by (sla) (increase(kpistream_sla_total{{{SLA}}}[30d]))"
    allowed = "on (sla) (1 - kpistream:sla_objective:ratio)"
    return f"1 - (({breached} or 0 * {every}) / {every}) / {allowed}"


# --- the KPI overview ------------------------------------------------------------------
# fmt: off
# (The panel lists are laid out by hand, one panel per paragraph: title, unit, queries,
# then what it shows and how to read it.)


def overview() -> tuple[Json, list[Row]]:
    fr, sla = "kpistream_first_response_seconds", "kpistream_sla_total"
    csat, nps = "kpistream_csat_responses_total", "kpistream_nps_responses_total"
    touches = "kpistream_touches_per_solved_ticket"
    q_only = 'queue=~"$queue"'
    headline = [
        stat("Active tickets", "short", f"sum(kpistream_tickets_active{{{HD}}})",
             doc="H1: tickets created and not yet solved or closed, now, in the selected queues "
                 "and priorities (a reopened ticket counts again): the backlog."),
        stat("First-response SLA met", "percentunit",
             ratio(sla, 'result="met"', f'sla="first_response",{HD}', "$__range"),
             steps=GOOD_RATIO,
             doc="H3: share of first-response SLA clocks met (urgent 1 h, high 4 h, normal 24 h, "
                 "low 48 h) among all results in the time range; a ticket nobody answers counts "
                 "as breached when its clock passes the target. Yellow below the 95 % "
                 "objective, red below 90 %."),
        stat("Resolution SLA met", "percentunit",
             ratio(sla, 'result="met"', f'sla="resolution",{HD}', "$__range"),
             steps=GOOD_RATIO,
             doc="H5: share of resolution SLA clocks (created -> first solve, 48 h by default) "
                 "met among all results in the time range. Yellow below 95 %, red below 90 %."),
        stat("Breaching now", "short",
             Q(f"sum by (sla) (kpistream_sla_breaching_tickets{{{HD}}})", "{{sla}}"),
             steps=ANY_IS_BAD,
             doc="H3/H5: open tickets whose SLA clock has passed its target and still runs, now, "
                 "per SLA. Anything above 0 is a ticket to pick up first."),
        stat("About to breach (15 min)", "short",
             Q(f"sum by (sla) (kpistream_sla_at_risk_tickets{{{HD}}})", "{{sla}}"),
             steps=[(None, GREEN), (1, YELLOW)],
             doc="H3/H5: open tickets whose SLA clock reaches its target within KPI_SLA_WARN "
                 "(15 min), per SLA: act on these before they breach."),
        stat("Agents on shift", "short", "sum(kpistream_agents_on_shift)",
             doc="H12: agents whose latest agent.shift is `on`, now (each worker counts the "
                 "agents of its partitions; the sum is exact)."),
        stat("CSAT", "percentunit", ratio(csat, 'score=~"4|5"', HD, "$__range"),
             steps=[(None, RED), (0.7, YELLOW), (0.8, GREEN)],
             doc="H13: share of CSAT answers with score 4 or 5 (of 5) in the time range."),
        stat("NPS", "none",
             f'100 * (sum(increase({nps}{{{HD},category="promoter"}}[$__range]))'
             f' - sum(increase({nps}{{{HD},category="detractor"}}[$__range])))'
             f" / sum(increase({nps}{{{HD}}}[$__range]))",
             steps=[(None, RED), (0, YELLOW), (30, GREEN)], decimals=0,
             doc="H14: net promoter score of the answers in the time range: % promoters (9-10) "
                 "minus % detractors (0-6), from -100 to 100."),
        stat("Orders confirmed within 60 s", "percentunit",
             ratio("kpistream_order_confirmation_sla_total", 'result="met"', CH, "$__range"),
             steps=GOOD_RATIO,
             doc="O2: share of the orders of the selected channels confirmed within a minute of "
                 "their placement, in the time range (cancelled within the minute: neither)."),
        stat("On-time delivery", "percentunit",
             ratio("kpistream_order_deliveries_total", 'on_time="true"', CH, "$__range"),
             steps=GOOD_RATIO,
             doc="O6: share of the orders delivered in the time range (with a promised date) "
                 "that arrived by it."),
        stat("Conversion after contact", "percentunit",
             ratio("kpistream_customer_conversions_total", 'converted="true"', "", "$__range"),
             doc="O7: of the conversion periods decided in the time range (7 days after a "
                 "support contact), the share in which the customer placed an order."),
        stat("Active customers", "short", 'max(kpistream_active_customers{window="$window"})',
             doc="H8: customers with an order within 30 days, at the end of the newest final "
                 "window of the selected size (only the merge worker exports it: max, not sum)."),
    ]
    backlog = [
        ts("Active tickets by queue", "short",
           Q('queue:kpistream_tickets_active:sum{queue=~"$queue"}', "{{queue}}"), w=8, stack=True,
           doc="H1: tickets not yet solved or closed per queue (recording rule queue:kpistream_"
               "tickets_active:sum; the priority filter does not apply). A growing area: tickets "
               "come in faster than they are solved."),
        ts("Active tickets by status", "short",
           Q(f"sum by (status) (kpistream_tickets_active{{{HD}}})", "{{status}}"), w=8, stack=True,
           doc="H1: active tickets by status: new, open, pending (waiting on the customer), "
               "on_hold. A large pending share waits on customers, not on agents."),
        ts("Active tickets by priority", "short",
           Q(f"sum by (priority) (kpistream_tickets_active{{{HD}}})", "{{priority}}"),
           w=8, stack=True,
           doc="H1: active tickets by their priority now."),
        ts("Tickets created vs solved (per hour)", "short",
           Q('3600 * sum(queue:kpistream_tickets_created:rate1h{queue=~"$queue"})', "created"),
           Q('3600 * sum(queue:kpistream_tickets_solved:rate1h{queue=~"$queue"})', "solved"),
           doc="Inflow and outflow of the selected queues over the last hour, in tickets per "
               "hour (recording rules queue:kpistream_tickets_created:rate1h and _solved:rate1h). "
               "Created above solved for long: a growing backlog (alert KpiBacklogGrowing)."),
        ts("Resolved and reopened tickets (per hour)", "short",
           Q(f"sum by (method) (increase(kpistream_tickets_solved_total{{{HD}}}[1h]))",
             "solved {{method}}"),
           Q(f"sum(increase(kpistream_tickets_reopened_total{{{HD}}}[1h]))", "reopened"),
           doc="H6: solves of the last hour by method of resolution (agent, self_service, "
               "automation, phone; a reopened ticket's next solve counts again), and H9 the "
               "reopens of the last hour."),
    ]
    first_response = [
        ts("First response p50 / p90 / p99 (rolling 1 h)", "s",
           Q(quantile(0.5, fr, HD, "1h"), "p50"), Q(quantile(0.9, fr, HD, "1h"), "p90"),
           Q(quantile(0.99, fr, HD, "1h"), "p99"), w=8,
           doc="H2: created -> first public agent reply, percentiles of the replies of the "
               "last hour from the histogram, summed over workers (interpolated within the "
               "buckets 30 s, 1 m, 5 m ... 96 h; every SLA target is a bucket bound)."),
        ts("First response p50 / p90 by queue (rolling 1 h)", "s",
           Q(f"queue:kpistream_first_response_seconds:p50_rate1h{{{q_only}}}", "p50 {{queue}}"),
           Q(f"queue:kpistream_first_response_seconds:p90_rate1h{{{q_only}}}", "p90 {{queue}}"),
           w=8,
           doc="H2: median and 90th percentile per queue over the last hour (recording rules "
               "queue:kpistream_first_response_seconds:p50_rate1h and :p90_rate1h; the priority "
               "filter does not apply). The queue whose p90 climbs needs agents."),
        ts("First response percentiles, newest final window", "s",
           Q('max by (percentile) (kpistream_first_response_window_all_seconds{window="$window"})',
             "p{{percentile}}"), w=8,
           doc="H2: p50/p90/p99 of all queues in the newest final event-time window of the "
               "selected size, from mergeable sketches (relative error <= 1 %). Each worker "
               "describes its own partitions: exact with one worker, the worst worker's with "
               "several (the merged value is on kpi.windows.v1)."),
        table("First response p90 by queue and priority, newest final window", "s",
              'max by (queue, priority) (kpistream_first_response_window_seconds'
              f'{{window="$window",percentile="90",{HD}}})',
              'sum by (queue, priority) (kpistream_first_response_window_responses'
              f'{{window="$window",{HD}}})',
              columns={"A": ("p90", "s"), "B": ("responses", "short")},
              doc="H2: the 90th percentile of first-response time and the number of first "
                  "responses in the newest final window of the selected size, per queue and "
                  "priority. Sort by p90 to find the slowest."),
        ts("First responses within their target (rolling 1 h)", "percentunit",
           *[Q(f"sum(rate({fr}_bucket{{{q_only},priority=\"{p}\",{le(b)}}}[1h]))"
               f" / sum(rate({fr}_count{{{q_only},priority=\"{p}\"}}[1h]))", p)
             for p, b in (("urgent", "3600"), ("high", "14400"), ("normal", "86400"),
                          ("low", "172800"))],
           lo=0, hi=1,
           doc="H2/H3: share of the first responses of the last hour that came within the SLA "
               "target of their priority (exact: the targets are bucket bounds). Unlike the "
               "attainment it leaves out tickets still unanswered."),
    ]
    sla_panels = [
        ts("SLA attainment by queue (rolling 1 d)", "percentunit",
           Q(f"sla_queue:kpistream_sla_attainment:ratio_rate1d{{{q_only}}}", "{{sla}} {{queue}}"),
           lo=0, hi=1, lines=[(None, RED), (0.95, GREEN)],
           doc="H3/H5: met / (met + breached) over the last day per SLA and queue (recording "
               "rule sla_queue:kpistream_sla_attainment:ratio_rate1d; the priority filter does "
               "not apply). The dashed line is the 95 % objective."),
        ts("SLA attainment by priority (rolling 1 h)", "percentunit",
           Q(ratio(sla, 'result="met"', HD, "1h", by="sla, priority"), "{{sla}} {{priority}}"),
           lo=0, hi=1,
           doc="H3/H5: met / (met + breached) over the last hour per SLA and the priority the "
               "ticket was created with (whose target applies)."),
        ts("Tickets breaching their SLA, by queue", "short",
           Q(f"sum by (sla, queue) (kpistream_sla_breaching_tickets{{{HD}}})",
             "{{sla}} {{queue}}"),
           doc="H3/H5: open tickets past their target whose clock still runs, per SLA and "
               "queue. Above 0 for 15 minutes opens a ticket (KpiTicketsBreaching)."),
        ts("Tickets about to breach (within 15 min), by queue", "short",
           Q(f"sum by (sla, queue) (kpistream_sla_at_risk_tickets{{{HD}}})", "{{sla}} {{queue}}"),
           doc="H3/H5: open tickets whose clock reaches its target within 15 minutes, per SLA "
               "and queue: the work list before the breach (urgent ones page, "
               "KpiUrgentTicketsAboutToBreach)."),
    ]
    work = [
        ts("Resolution time p50 / p90 (rolling 1 d)", "s",
           Q(quantile(0.5, "kpistream_resolution_seconds", HD, "1d", by="kind"), "p50 {{kind}}"),
           Q(quantile(0.9, "kpistream_resolution_seconds", HD, "1d", by="kind"), "p90 {{kind}}"),
           doc="H4: created -> first solve (kind=first) and created -> final solve (kind=full, "
               "observed at the close), percentiles over the last day (buckets 1 h ... 30 d)."),
        ts("Requester wait and agent work time p50 / p90 (rolling 1 d)", "s",
           *[Q(quantile(q, f"kpistream_{family}_seconds", HD, "1d"), f"p{q * 100:g} {name}")
             for family, name in (("requester_wait", "requester wait"),
                                  ("agent_work", "agent work"))
             for q in (0.5, 0.9)],
           doc="H4: requester wait = created -> first solve counting only new/open time "
               "(pending and on_hold pause it); agent work = created -> close in new/open, "
               "reopens included. A wide gap to the resolution time is waiting on customers."),
        ts("Escalation rate by queue (rolling 1 d)", "percentunit",
           Q(f"queue:kpistream_escalation:ratio_rate1d{{{q_only}}}", "{{queue}}"), w=8, lo=0,
           doc="H7: escalations / tickets created over the last day per queue (recording rule "
               "queue:kpistream_escalation:ratio_rate1d)."),
        ts("Escalation rate, complaints vs other tickets (rolling 1 d)", "percentunit",
           Q(f"sum by (complaint) (increase(kpistream_tickets_escalated_total{{{HD}}}[1d]))"
             f" / sum by (complaint) (increase(kpistream_tickets_created_total{{{HD}}}[1d]))",
             "complaint={{complaint}}"), w=8, lo=0,
           doc="H7: escalations / tickets created over the last day, for complaints "
               "(complaint=true: subject_kind complaint) and for the other tickets."),
        ts("Reopen rate by queue (rolling 1 d)", "percentunit",
           Q(f"queue:kpistream_reopen:ratio_rate1d{{{q_only}}}", "{{queue}}"), w=8, lo=0,
           doc="H9: reopens / solves over the last day per queue (recording rule queue:"
               "kpistream_reopen:ratio_rate1d). Rising: tickets are solved before the problem."),
        ts("One-touch resolution rate (rolling 1 d)", "percentunit",
           Q(f"(sum(increase({touches}_bucket{{{HD},{le('1')}}}[1d]))"
             f" - sum(increase({touches}_bucket{{{HD},{le('0')}}}[1d])))"
             f" / sum(increase({touches}_count{{{HD}}}[1d]))", "one-touch"), w=8, lo=0, hi=1,
           doc="H10: share of the first solves of the last day with exactly one public agent "
               "reply before them (le=1 minus le=0 of the touches histogram)."),
        ts("Agent replies per solved ticket (mean, rolling 1 d)", "short",
           Q(f"sum(increase({touches}_sum{{{HD}}}[1d]))"
             f" / sum(increase({touches}_count{{{HD}}}[1d]))", "replies per solved ticket"), w=8,
           doc="H10: public agent replies before a ticket's first solve, the mean over the "
               "first solves of the last day: the work per interaction."),
        ts("Agent handle time p50 / p90 (rolling 1 h)", "s",
           Q(quantile(0.5, "kpistream_agent_handle_seconds", q_only, "1h"), "p50"),
           Q(quantile(0.9, "kpistream_agent_handle_seconds", q_only, "1h"), "p90"), w=8,
           doc="H10: handle_seconds of the agent replies of the last hour that carry it (the "
               "histogram has the queue only: the priority filter does not apply)."),
        ts("Tickets solved per agent-hour (rolling 1 h)", "short",
           Q(f'sum(increase(kpistream_tickets_solved_total{{{HD},method="agent"}}[1h]))'
             " / sum(avg_over_time(kpistream_agents_on_shift[1h]))", "solved per agent-hour"),
           w=8,
           doc="H12: tickets solved by agents (method=agent) in the last hour / the agent-hours "
               "of that hour (the mean number of agents on shift)."),
        ts("Agent replies (per hour)", "short",
           Q(f"sum by (queue) (increase(kpistream_agent_replies_total{{{HD}}}[1h]))",
             "{{queue}}"),
           Q("sum(kpistream_agents_on_shift)", "agents on shift"), w=8,
           doc="H10/H12: public agent replies (touches) of the last hour per queue, beside the "
               "agents on shift now: the work done and the staff doing it."),
        ts("Value settled per currency (per day)", "short",
           Q("sum by (currency) (increase(kpistream_value_settled_total[1d]))", "{{currency}}"),
           w=8,
           doc="H11: refunds and credits granted at resolution over the last day, in units of "
               "each ISO 4217 currency (never added across currencies)."),
    ]
    satisfaction = [
        ts("CSAT by queue (rolling 1 d)", "percentunit",
           Q(f"queue:kpistream_csat:ratio_rate1d{{{q_only}}}", "{{queue}}"), w=8, lo=0, hi=1,
           doc="H13: share of CSAT answers 4 or 5 over the last day per queue (recording rule "
               "queue:kpistream_csat:ratio_rate1d); KpiCsatFalling compares it with last week."),
        ts("NPS by queue (rolling 1 d)", "none",
           Q(f"queue:kpistream_nps:score_rate1d{{{q_only}}}", "{{queue}}"), w=8, lo=-100, hi=100,
           doc="H14: % promoters - % detractors of the NPS answers of the last day per queue "
               "(recording rule queue:kpistream_nps:score_rate1d), -100..100."),
        ts("CSAT answers by score (per day)", "short",
           Q(f"sum by (score) (increase({csat}{{{HD}}}[1d]))", "score {{score}}"), w=8,
           stack=True,
           doc="H13: the distribution behind CSAT: the answers of the last day by score 1..5."),
        ts("Self-service success rate (rolling 1 d)", "percentunit",
           Q(ratio("kpistream_selfservice_sessions_total", 'succeeded="true"', "", "1d"),
             "success rate"), w=8, lo=0, hi=1,
           doc="H15: share of the self-service sessions of the last day that succeeded (the "
               "others may turn into tickets)."),
        ts("Self-service effort: screens and clicks p50 / p90 (rolling 1 d)", "short",
           *[Q(quantile(q, f"kpistream_selfservice_{what}", "", "1d"), f"p{q * 100:g} {what}")
             for what in ("screens", "clicks") for q in (0.5, 0.9)], w=8,
           doc="H15: screens and clicks a self-service session took, median and 90th "
               "percentile of the sessions of the last day: the effort to complete a request."),
        ts("Self-service sessions (per hour)", "short",
           Q("sum by (succeeded) (increase(kpistream_selfservice_sessions_total[1h]))",
             "succeeded={{succeeded}}"), w=8, stack=True,
           doc="H15: self-service sessions of the last hour, succeeded and failed."),
    ]
    orders = [
        ts("Order confirmation latency p50 / p99 by channel (5 min)", "s",
           Q(f"channel:kpistream_order_confirmation_seconds:p99_rate5m{{{CH}}}", "p99 {{channel}}"),
           Q(quantile(0.5, "kpistream_order_confirmation_seconds", CH, "5m", by="channel"),
             "p50 {{channel}}"), lines=[(None, GREEN), (60, RED)],
           doc="O1: placed -> first confirmation over the last 5 minutes per channel (p99: "
               "recording rule channel:kpistream_order_confirmation_seconds:p99_rate5m). p99 "
               "above the 60 s line for 10 minutes pages (KpiOrderConfirmationSlow)."),
        ts("Orders confirmed within 60 s by channel (rolling 1 h)", "percentunit",
           Q(f"channel:kpistream_order_confirmation_sla:ratio_rate1h{{{CH}}}", "{{channel}}"),
           lo=0, hi=1,
           doc="O2: share of the orders of the last hour confirmed within a minute, per channel "
               "(recording rule channel:kpistream_order_confirmation_sla:ratio_rate1h)."),
        ts("One-click confirmation (rolling 1 d)", "percentunit",
           Q(ratio("kpistream_order_one_click_confirmations_total", 'one_click="true"', CH, "1d",
                   by="channel"), "{{channel}}"), w=8, lo=0, hi=1,
           doc="O3: share of the confirmed web and app orders of the last day that took at most "
               "one click, per channel."),
        ts("Proactive notices (rolling 1 d)", "percentunit",
           Q("kpistream_order_shipment_notices:ratio_rate1d", "shipment notice within 15 min"),
           Q("kpistream_order_delay_notices:ratio_rate1d", "delay told first"), w=8, lo=0, hi=1,
           doc="O4: share of shipped orders whose customer got a shipment notice within 15 "
               "minutes; O5: share of delayed orders whose customer was told before asking "
               "support (recording rules, all channels)."),
        ts("On-time delivery (rolling 1 d)", "percentunit",
           Q("kpistream_order_deliveries_on_time:ratio_rate1d", "all channels"),
           Q(ratio("kpistream_order_deliveries_total", 'on_time="true"', CH, "1d", by="channel"),
             "{{channel}}"), w=8, lo=0, hi=1,
           doc="O6: share of the orders delivered in the last day (with a promised date) that "
               "arrived by it: all channels (recording rule) and per selected channel."),
        ts("Orders placed and cancelled (per hour)", "short",
           Q(f"sum by (channel) (increase(kpistream_orders_placed_total{{{CH}}}[1h]))",
             "placed {{channel}}"),
           Q(f"sum(increase(kpistream_orders_cancelled_total{{{CH}}}[1h]))", "cancelled"),
           doc="Orders placed in the last hour per channel, and the cancellations of the "
               "selected channels."),
        ts("Shipment and delay notices by result (per day)", "short",
           Q(f"sum by (result) (increase(kpistream_order_shipment_notices_total{{{CH}}}[1d]))",
             "shipment notice {{result}}"),
           Q(f"sum by (result) (increase(kpistream_order_delay_notices_total{{{CH}}}[1d]))",
             "delay {{result}}"),
           doc="O4: shipped orders of the last day by whether the notice went out within 15 "
               "minutes (met, missed); O5: delayed orders by what came first after the delay: "
               "told_first (the notice), contact_first (the customer asked support), not_told "
               "(delivered or cancelled without either)."),
    ]
    customers = [
        ts("Conversion after contact (rolling 7 d)", "percentunit",
           Q(ratio("kpistream_customer_conversions_total", 'converted="true"', "", "7d"),
             "converted"), w=6, lo=0, hi=1,
           doc="O7: of the conversion periods decided in the last 7 days (each 7 days after a "
               "support contact), the share with an order. The exact value per window is the "
               "conversion_after_contact message of kpi.windows.v1."),
        ts("Customer retention (rolling 30 d)", "percentunit",
           Q("sum(increase(kpistream_customers_retained_total[30d]))"
             " / sum(increase(kpistream_customer_retention_base_total[30d]))", "retained"),
           w=6, lo=0, hi=1,
           doc="O8: customers who ordered again in the next 30-day window / customers with an "
               "order in a window, counted over the last 30 days (approximate across window "
               "bounds; exact per window: customer_retention on kpi.windows.v1)."),
        ts("Active customers by window size", "short",
           Q("max by (window) (kpistream_active_customers)", "{{window}}"), w=6,
           doc="H8: customers with an order within 30 days, at the end of the newest final "
               "window of each size (only the merge worker exports it: max over workers)."),
        ts("Complaints per 1,000 active customers", "short",
           Q("max by (window) (kpistream_complaints_per_thousand_customers)", "{{window}}"), w=6,
           doc="H8: complaints created in the newest final window per 1,000 active customers, "
               "per window size. Complaints growing faster than customers are a service "
               "problem, not growth."),
        stat("Complaints outgrow customers", "none",
             Q("max by (window) (kpistream_complaints_outgrow_customers)", "{{window}}"),
             w=6, mappings=YES_NO, steps=[(None, GREEN), (1, RED)],
             doc="H8: yes when complaints per active customer grew against the previous window "
                 "of that size (KpiComplaintsOutgrowCustomers watches the daily one)."),
    ]
    indicators = [
        table("Reported indicators", "none",
              "max by (name, unit) (kpistream_external_indicator)",
              "time() - max by (name, unit) "
              "(kpistream_external_indicator_period_end_timestamp_seconds)",
              "1000 * max by (name, unit) "
              "(kpistream_external_indicator_period_start_timestamp_seconds)",
              columns={"A": ("value", "none"), "B": ("period ended (ago)", "s"),
                       "C": ("period start", "dateTimeAsIso")},
              doc="Indicators no event carries (employee turnover, brand attributes, competitor "
                  "comparison, cash flow, ...) as reported on indicators.external: the value of "
                  "the newest period of each name, how long ago that period ended (stale "
                  "reports show a large age) and its start. name=other: over 50 names."),
        ts("Indicator values", "none",
           Q("max by (name, unit) (kpistream_external_indicator)", "{{name}} ({{unit}})"),
           doc="The reported value of each indicator over time, in the unit of its reports "
               "(in the legend); a step is a new period or a correction."),
    ]
    rows = [
        Row("Headline (over the selected time range)", headline),
        Row("H1 backlog, H6 resolved issues", backlog),
        Row("H2 first response", first_response),
        Row("H3, H5 SLA attainment and breach clocks", sla_panels),
        Row("H4 resolution, H7 escalation, H9 reopen, H10-H12 work and value", work),
        Row("H13 CSAT, H14 NPS, H15 self-service", satisfaction),
        Row("O1-O6 orders", orders),
        Row("O7 conversion, O8 retention, H8 complaints per customer", customers),
        Row("External indicators (indicators.external)", indicators),
    ]
    meta = {
        "uid": "kpi-overview",
        "title": "kpi-stream / KPI overview",
        "description": "Every KPI of the catalogue (H1-H15, O1-O8, external indicators) as the "
                       "worker exports it, by queue, priority and channel.",
        "refresh": "1m",
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": [datasource_var(), QUEUE, PRIORITY, CHANNEL, WINDOW]},
    }
    return meta, rows


# --- the SLO dashboard -----------------------------------------------------------------


def slo() -> tuple[Json, list[Row]]:
    windows = ("5m", "30m", "1h", "6h", "3d")
    burn_tag = "{{sla}} {{queue}}/{{priority}}"
    budget = [
        stat("Objective", "percentunit",
             Q('kpistream:sla_objective:ratio{sla=~"$sla"}', "{{sla}}"), w=6, h=6,
             doc="The SLO: the share of SLA clocks to be met, per SLA (recording rule "
                 "kpistream:sla_objective:ratio of deploy/prometheus/rules/recording.yml; "
                 "change it there). The error budget is 1 - objective of the clocks."),
        stat("Attainment over the time range", "percentunit",
             Q(ratio("kpistream_sla_total", 'result="met"', SLA, "$__range", by="sla"), "{{sla}}"),
             w=6, h=6, steps=GOOD_RATIO,
             doc="met / (met + breached) of the selected SLAs, queues and priorities over the "
                 "dashboard's time range. Below the objective: the budget of the range is spent."),
        gauge("Error budget remaining (30 days)", "percentunit", Q(budget_30d(), "{{sla}}"),
              steps=[(None, RED), (0.25, YELLOW), (0.5, GREEN)],
              doc="1 - (breached share of the last 30 days) / (1 - objective), per SLA, for the "
                  "selected queues and priorities: 100 % no breach, 0 % the monthly budget is "
                  "spent (the number goes negative when overspent)."),
        stat("Breaching and about to breach now", "short",
             Q(f"sum by (sla) (kpistream_sla_breaching_tickets{{{SLA}}})", "breaching {{sla}}"),
             Q(f"sum by (sla) (kpistream_sla_at_risk_tickets{{{SLA}}})", "at risk {{sla}}"),
             w=6, h=6, steps=[(None, GREEN), (1, YELLOW)],
             doc="Open tickets past their target (breaching) and reaching it within 15 minutes "
                 "(at risk), per SLA: the tickets that spend the budget next."),
        ts("Error budget remaining (rolling 30 days)", "percentunit", Q(budget_30d(), "{{sla}}"),
           hi=1, lines=[(None, RED), (0, GREEN)],
           doc="The 30-day error budget left over time, per SLA: a steady slope down is a slow "
               "burn, a cliff a fast one; below the 0 line the SLO is missed."),
        table("Error budget remaining by queue and priority (3 d)", "percentunit",
              f"1 - sla_queue_priority:kpistream_sla_errors:ratio_rate3d{{{SLA}}} / {ALLOWED}",
              steps=[(None, RED), (0, YELLOW), (0.5, GREEN)],
              doc="Per SLA, queue and priority: 1 - (breached share of the last 3 days) / (1 - "
                  "objective), on the recording rule sla_queue_priority:kpistream_sla_errors:"
                  "ratio_rate3d. Negative: more breaches than the objective allows there "
                  "(KpiSlaBudgetBurnSlow)."),
    ]
    burn_rates = [
        ts("Fast burn: 1 h and 5 min (pages at 14.4x)", "none",
           Q(burn("1h"), f"1h {burn_tag}"), Q(burn("5m"), f"5m {burn_tag}"),
           w=8, h=9, lo=0, lines=[(None, GREEN), (14.4, RED)],
           doc="Burn rate = error ratio / (1 - objective): 1x spends a 30-day budget in 30 "
               "days, 14.4x in about 2. KpiSlaBudgetBurnFast pages when both the 1 h and the "
               "5 min rate (recording rules ..._ratio_rate1h, _rate5m) are above the line."),
        ts("Medium burn: 6 h and 30 min (pages at 6x)", "none",
           Q(burn("6h"), f"6h {burn_tag}"), Q(burn("30m"), f"30m {burn_tag}"),
           w=8, h=9, lo=0, lines=[(None, GREEN), (6, RED)],
           doc="KpiSlaBudgetBurnMedium pages when both the 6 h and the 30 min burn rate are "
               "above 6: the monthly budget lasts about 5 days at that rate."),
        ts("Slow burn: 3 d and 6 h (ticket at 1x)", "none",
           Q(burn("3d"), f"3d {burn_tag}"), Q(burn("6h"), f"6h {burn_tag}"),
           w=8, h=9, lo=0, lines=[(None, GREEN), (1, RED)],
           doc="KpiSlaBudgetBurnSlow opens a ticket when both the 3 day and the 6 h burn rate "
               "are above 1: the SLO will be missed this month if nothing changes."),
        table("Burn rate now, every window", "none", *[burn(w) for w in windows],
              columns={ref: (w, "none") for ref, w in zip("ABCDE", windows, strict=True)},
              w=24, h=10, steps=[(None, GREEN), (1, YELLOW), (6, RED)],
              doc="One row per SLA, queue and priority with results, one column per window of "
                  "the recording rules. Read it like the alerts: a long and a short window "
                  "both high, the budget burns now; only the long one, it burned and stopped."),
        ts("Error ratio by queue and priority (1 h) vs allowed", "percentunit",
           Q(f"sla_queue_priority:kpistream_sla_errors:ratio_rate1h{{{SLA}}}", burn_tag),
           Q('1 - kpistream:sla_objective:ratio{sla=~"$sla"}', "allowed {{sla}}"),
           w=24, lo=0, hi=1,
           doc="The breached share of the SLA clocks of the last hour per SLA, queue and "
               "priority (recording rule sla_queue_priority:kpistream_sla_errors:ratio_rate1h) "
               "and the share the objective allows."),
    ]
    results = [
        ts("SLA results (per hour)", "short",
           Q(f"sum by (sla, result) (increase(kpistream_sla_total{{{SLA}}}[1h]))",
             "{{sla}} {{result}}"),
           doc="SLA clocks of the last hour that stopped in time (met) or passed their target "
               "(breached), per SLA: the counts behind every ratio above."),
        ts("Attainment by queue (rolling 1 d) vs objective", "percentunit",
           Q('sla_queue:kpistream_sla_attainment:ratio_rate1d{sla=~"$sla",queue=~"$queue"}',
             "{{sla}} {{queue}}"),
           Q('kpistream:sla_objective:ratio{sla=~"$sla"}', "objective {{sla}}"), lo=0, hi=1,
           doc="met / (met + breached) over the last day per SLA and queue (recording rule "
               "sla_queue:kpistream_sla_attainment:ratio_rate1d; the priority filter does not "
               "apply) against the objective."),
    ]
    rows = [
        Row("Objective and error budget", budget),
        Row("Burn rates by queue and priority (the windows of the alerts)", burn_rates),
        Row("SLA results", results),
    ]
    meta = {
        "uid": "kpi-slo",
        "title": "kpi-stream / SLA error budgets",
        "description": "Error budget and burn rates of the first-response (H3) and resolution "
                       "(H5) SLAs per queue and priority, on the recording rules of the alerts.",
        "refresh": "1m",
        "time": {"from": "now-7d", "to": "now"},
        "templating": {"list": [datasource_var(), SLA_VAR, QUEUE, PRIORITY]},
    }
    return meta, rows


# --- the pipeline dashboard ------------------------------------------------------------


def pipeline() -> tuple[Json, list[Row]]:
    t_only = 'topic=~"$topic"'
    health = [
        stat("Workers up", "none", Q(f'up{{job="kpi-stream",{INST}}}', "{{instance}}"),
             w=6, mappings=UP_DOWN, steps=[(None, RED), (1, GREEN)],
             doc="Whether Prometheus scrapes each worker (up of job kpi-stream). DOWN for 2 "
                 "minutes pages (KpiWorkerDown); its partitions move to the other workers."),
        stat("Events processed", "cps", f"sum(topic:kpistream_events:rate5m{{{t_only}}})", w=6,
             doc="Valid events per second over 5 minutes, selected topics (recording rule "
                 "topic:kpistream_events:rate5m). 0 on the help-desk topic for 15 minutes "
                 "pages (KpiNoEvents)."),
        stat("Dead letters", "cps", f"sum(topic:kpistream_events_rejected:rate5m{{{t_only}}})",
             w=6, steps=[(None, GREEN), (0.1, RED)],
             doc="Messages per second sent to the dead-letter topic over 5 minutes (recording "
                 "rule topic:kpistream_events_rejected:rate5m); above 0.1/s for 10 minutes "
                 "opens a ticket (KpiDeadLetters)."),
        stat("Max consumer lag", "s", f"max(topic:kpistream_consumer_lag_seconds:max{{{t_only}}})",
             w=6, steps=[(None, GREEN), (60, YELLOW), (300, RED)],
             doc="Age of the oldest unprocessed record of the selected topics (recording rule "
                 "topic:kpistream_consumer_lag_seconds:max); over 5 minutes pages "
                 "(KpiConsumerLagHigh): every KPI from it is late."),
    ]
    throughput = [
        ts("Events processed by type", "cps",
           Q(per_s("kpistream_events_total", TOPIC, by="type"), "{{type}}"), stack=True,
           doc="Valid events per second by event type (duplicates and rejected messages not "
               "included), selected topics and workers."),
        ts("Events per topic (5 min)", "cps",
           Q(f"topic:kpistream_events:rate5m{{{t_only}}}", "{{topic}}"),
           doc="Valid events per second per topic over 5 minutes, all workers (recording rule "
               "topic:kpistream_events:rate5m)."),
        ts("Duplicates dropped", "cps",
           Q(per_s("kpistream_events_duplicate_total", TOPIC, by="topic"), "{{topic}}"), w=8,
           doc="Valid events dropped per second because their event_id was processed before "
               "(producer retries, history sent again): harmless, each counted once."),
        ts("Late facts by KPI family", "cps",
           Q(per_s("kpistream_events_late_total", TOPIC, by="topic, kpi"), "{{kpi}} {{topic}}"),
           w=8,
           doc="KPI facts per second that fell into a window already final (later than "
               "KPI_GRACE): they update the live metrics, not the final windows. A steady "
               "flow means the grace period is too short for the producers."),
        ts("Events not applied, by reason", "cps",
           Q(per_s("kpistream_events_dropped_total", TOPIC, by="topic, reason"),
             "{{reason}} {{topic}}"), w=8,
           doc="Valid events per second not applied: ticket_history_full (over 1,000 events in "
               "a ticket), order_history_full (over 200), indicator_period_too_old. A runaway "
               "producer shows here."),
    ]
    dead_letters = [
        ts("Rejected messages by reason", "cps",
           Q(per_s("kpistream_events_rejected_total", TOPIC, by="reason"), "{{reason}}"),
           stack=True,
           doc="Messages per second sent to the dead-letter topic by reason (invalid_json, "
               "schema_violation, bad_timestamp, unknown_type, ...): the reason names the "
               "producer's bug; the messages are on the DLQ topic with their headers."),
        ts("Rejected per topic (5 min)", "cps",
           Q(f"topic:kpistream_events_rejected:rate5m{{{t_only}}}", "{{topic}}"),
           lines=[(None, GREEN), (0.1, RED)],
           doc="Dead-letter messages per second per topic over 5 minutes (recording rule "
               "topic:kpistream_events_rejected:rate5m); the line is the 0.1/s of "
               "KpiDeadLetters."),
    ]
    lag = [
        ts("Consumer lag (records)", "short",
           Q(f"sum by (topic, partition) (kpistream_consumer_lag_records{{{TOPIC}}})",
             "{{topic}}/{{partition}}"),
           doc="Records not yet processed per topic and partition (high water mark - "
               "position): the input partitions each worker owns and, on the merge worker, "
               "the window-partials partition."),
        ts("Consumer lag (seconds)", "s",
           Q(f"max by (topic, partition) (kpistream_consumer_lag_seconds{{{TOPIC}}})",
             "{{topic}}/{{partition}}"),
           lines=[(None, GREEN), (300, RED)],
           doc="Age of the last processed record's Kafka timestamp while behind, 0 when "
               "caught up, per topic and partition. Over the line (5 minutes) for 5 minutes "
               "pages (KpiConsumerLagHigh, on the max per topic)."),
        ts("Partitions owned (a step is a rebalance)", "short",
           Q(f"sum by (instance, topic) (kpistream_partitions_owned{{{TOPIC}}})",
             "{{instance}} {{topic}}"),
           doc="Partitions each worker actively owns per topic (standby copies excluded). The "
               "sum per topic stays at the partition count; a step is a rebalance, a gap a "
               "worker that left."),
        ts("API window store", "short",
           Q(f"sum by (instance) (kpistream_api_windows_stored{{{INST}}})", "stored {{instance}}"),
           Q(f"max by (instance) (kpistream_api_kpi_topic_lag_records{{{INST}}})",
             "unread {{instance}}"),
           doc="Closed-window messages of kpi.windows.v1 each worker holds for GET "
               "/kpis/windows, and the records of that topic it has not read yet (should stay "
               "near 0)."),
    ]
    broker = [
        stat("Kafka reachable", "none", Q(f"kpistream_broker_up{{{INST}}}", "{{instance}}"),
             w=6, mappings=UP_DOWN, steps=[(None, RED), (1, GREEN)],
             doc="Whether each worker's last metadata request to Kafka (one every 5 s) "
                 "succeeded. DOWN: /health says degraded; the consumer and producer reconnect "
                 "by themselves, the KPIs stand still meanwhile."),
        ts("Kafka outage duration", "s",
           Q(f"max by (instance) (kpistream_broker_outage_seconds{{{INST}}})", "{{instance}}"),
           w=6,
           doc="How long each worker has been unable to reach Kafka, now; 0 while it can."),
        ts("Kafka outages (per hour)", "short",
           Q(f"sum by (instance) (increase(kpistream_broker_outages_total{{{INST}}}[1h]))",
             "{{instance}}"), w=6,
           doc="Times each worker lost Kafka (or could not reach it at start) in the last "
               "hour: a flapping network or broker shows as a steady count."),
        ts("Last contact with Kafka", "s",
           Q("time() - max by (instance) "
             f"(kpistream_broker_last_contact_timestamp_seconds{{{INST}}})", "{{instance}}"),
           w=6,
           doc="Wall clock - the last time each worker reached Kafka: a few seconds while the "
               "broker answers the 5 s probe, growing during an outage."),
    ]
    windows = [
        ts("Watermark behind the wall clock", "s",
           Q(f"time() - min by (topic) (kpistream_watermark_timestamp_seconds{{{TOPIC}}})",
             "{{topic}}"), w=8, lines=[(None, GREEN), (3600, RED)],
           doc="Wall clock - the oldest event-time watermark per topic: windows before it are "
               "final. Over an hour pages (KpiWindowsNotClosing); a replay of history shows the "
               "age of that history."),
        ts("Newest event behind the wall clock", "s",
           Q(f"time() - max by (topic) (kpistream_last_event_timestamp_seconds{{{TOPIC}}})",
             "{{topic}}"), w=8,
           doc="Wall clock - the event time (occurred_at) of the newest event processed per "
               "topic: how fresh the KPIs are."),
        ts("Newest final window end behind the wall clock", "s",
           Q("time() - max by (window) "
             f"(kpistream_first_response_window_end_timestamp_seconds{{{INST}}})", "{{window}}"),
           w=8,
           doc="Wall clock - the end of the newest final window of each size (the window the "
               "first-response window gauges describe): the newest event's age plus the grace "
               "period plus up to one window."),
        ts("Event-time speed", "none",
           Q(f"min by (topic) (deriv(kpistream_watermark_timestamp_seconds{{{TOPIC}}}[{RATE}]))",
             "{{topic}}"), w=8,
           doc="Event seconds the watermark advances per wall-clock second, per topic: 1 in "
               "live operation, the speed-up in a replay, 0 while windows stop closing."),
        ts("KPI messages written", "cps",
           Q(per_s("kpistream_kpi_messages_total", INST), "messages"), w=8,
           doc="Messages per second written to kpi.windows.v1: each revision of a KPI, "
               "dimension set and window (closed, corrected, final) and each tombstone; bursts "
               "follow window ends."),
        ts("Stale window partials", "cps",
           Q(per_s("kpistream_stale_partials_total", INST), "stale partials"), w=8,
           doc="Window partials per second that reached the merge after their window was final "
               "(sent again after a restart): ignored, the final message stands. Non-zero only "
               "around restarts."),
    ]
    housekeeping = [
        ts("Ticket states pruned", "cps",
           Q(per_s("kpistream_tickets_pruned_total", INST), "pruned"), w=8,
           doc="Ticket states dropped per second, KPI_TICKET_RETENTION (event time) after their "
               "close or after the newest event of a ticket never created: bounded tables."),
        ts("Label values overflowed to `other`", "cps",
           Q(per_s("kpistream_label_overflow_total", INST, by="label"), "{{label}}"), w=8,
           doc="Values per second reported as `other` because the label set was full: queues "
               "beyond KPI_QUEUES / KPI_MAX_QUEUES (label=queue), indicator names beyond 50 "
               "(label=indicator). Non-zero: configure the queue list."),
        ts("Dead-letter send errors", "cps",
           Q(per_s("kpistream_dlq_send_errors_total", INST), "send errors"), w=8,
           doc="Failed writes to the dead-letter topic per second: retried until they are "
               "in (a copy too large for the topic goes without its value); non-zero: "
               "check the broker."),
        ts("KPI send errors (merge held back)", "cps",
           Q(per_s("kpistream_kpi_send_errors_total", INST), "send errors"), w=8,
           doc="KPI messages per second the KPI topic refused or did not acknowledge. The "
               "merge holds and retries (the window-partials lag grows meanwhile); non-zero: "
               "check the KPI topic and the broker."),
        ts("Scrape duration of /metrics", "s",
           Q(f'scrape_duration_seconds{{job="kpi-stream",{INST}}}', "{{instance}}"),
           doc="How long Prometheus takes to scrape each worker's /metrics (a snapshot, about "
               "40 ms with the default label sets); near the 10 s scrape_timeout scrapes fail."),
        ts("Samples per scrape", "short",
           Q(f'scrape_samples_scraped{{job="kpi-stream",{INST}}}', "{{instance}}"),
           doc="Samples each worker exposes per scrape: the cardinality the bounded labels "
               "(queue, priority, window, ...) add up to."),
    ]
    rows = [
        Row("Health", health),
        Row("Throughput", throughput),
        Row("Dead-letter topic", dead_letters),
        Row("Consumer lag and partitions", lag),
        Row("Kafka broker", broker),
        Row("Windows and event time", windows),
        Row("State, labels and scrapes", housekeeping),
    ]
    meta = {
        "uid": "kpi-pipeline",
        "title": "kpi-stream / Pipeline",
        "description": "The worker itself: throughput, dead letters, consumer lag, partitions, "
                       "the broker, watermarks and windows, state and scrapes.",
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [datasource_var(), TOPIC_VAR, INSTANCE]},
    }
    return meta, rows


# fmt: on
# --- assembly --------------------------------------------------------------------------


def dashboard(meta: Json, rows: list[Row]) -> Json:
    """The panels left to right, wrapping at Grafana's 24 columns, each group under a row
    panel; ids in order."""
    panels: list[Json] = []
    y = 0
    for row in rows:
        panels.append(
            {
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        y += 1
        x, line_h = 0, 0
        for p in row.panels:
            pos = p["gridPos"]
            if x + pos["w"] > 24:
                x, y, line_h = 0, y + line_h, 0
            pos["x"], pos["y"] = x, y
            x += pos["w"]
            line_h = max(line_h, pos["h"])
            panels.append(p)
        y += line_h
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {
        "uid": meta["uid"],
        "title": meta["title"],
        "description": meta["description"],
        "tags": TAGS,
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "timezone": "",
        "time": meta["time"],
        "refresh": meta["refresh"],
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "kpi-stream",
                "type": "dashboards",
                "tags": TAGS,
                "asDropdown": False,
                "includeVars": False,
                "keepTime": True,
                "targetBlank": False,
                "icon": "external link",
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": meta["templating"],
        "panels": panels,
    }


def build() -> dict[str, Json]:
    """File name -> dashboard."""
    return {
        "kpi-overview.json": dashboard(*overview()),
        "kpi-slo.json": dashboard(*slo()),
        "kpi-pipeline.json": dashboard(*pipeline()),
    }


def render(board: Json) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def doc_tables() -> str:
    """The panel tables of docs/dashboards.md: per dashboard, its rows and their panels."""
    out = []
    for name, board in build().items():
        out += [f"### {board['title']}", "", f"`{name}`, uid `{board['uid']}`.", ""]
        out += ["| panel | type | unit | what it shows, how to read it |", "|---|---|---|---|"]
        for p in board["panels"]:
            if p["type"] == "row":
                out.append(f"| **{p['title']}** | | | |")
            else:
                unit = p["fieldConfig"]["defaults"]["unit"]
                text = p["description"].replace("|", "\\|")
                out.append(f"| {p['title']} | {p['type']} | `{unit}` | {text} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the Grafana dashboards of kpi-stream.")
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    parser.add_argument("--doc", action="store_true", help="print the panel tables of the docs")
    args = parser.parse_args(argv)
    if args.doc:
        print(doc_tables())
        return 0
    stale = []
    for name, board in build().items():
        path, text = OUT / name, render(board)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run {Path(__file__).name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
