"""kpi-stream: real-time customer-service KPIs from help-desk and order events."""

__version__ = "0.1.0"
