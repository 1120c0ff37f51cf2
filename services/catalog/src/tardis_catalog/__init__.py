"""Tardis catalog service: per-client SQLite metadata."""
