"""Exporters: they read a snapshot and expose it; they never change KPI state."""
