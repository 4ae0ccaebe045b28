"""Prometheus export: custom collectors over consistent snapshots, and the secured HTTP endpoint."""
