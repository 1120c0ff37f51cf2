"""Tardis ingest service: backup sessions and change negotiation; tardisd."""
