"""Tardis command-line tools: tardis, regenerate, sonic and friends."""
