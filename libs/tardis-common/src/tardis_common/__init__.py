"""Code shared by the Tardis clients and services."""
