"""Product and protocol versions, and the rule for when a client and server can talk."""

from __future__ import annotations

__version__ = "0.1.0"

# Bumped on any incompatible change to the tardis.v1 contracts' behaviour.
PROTOCOL_VERSION = 1
# The oldest protocol version a server of this release still serves.
MIN_PROTOCOL_VERSION = 1


def compatible(peer_protocol: int) -> bool:
    """True when a peer speaking ``peer_protocol`` can talk to this release."""
    return MIN_PROTOCOL_VERSION <= peer_protocol <= PROTOCOL_VERSION
