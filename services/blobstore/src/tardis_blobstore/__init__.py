"""Tardis blob store service: the 00-ff hashed object tree."""
