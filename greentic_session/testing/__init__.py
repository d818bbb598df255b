"""Test support, shipped for applications that want the same: private, throwaway servers on free
loopback ports (`server`), the two topologies built from them (Sentinel in `sentinel`, Redis
Cluster in `cluster`), and the backend table that drives the conformance suite (`backends`).

Nothing here touches a server it did not start.
"""

from __future__ import annotations

from .backends import BACKENDS, LOOP_KINDS, Backend, Topology, loop_factory, run_on
from .cluster import LocalCluster
from .sentinel import SentinelCluster
from .server import SERVER_KINDS, RedisServer, TLSFiles, find_redis_server, find_server, free_port

__all__ = [
    "BACKENDS",
    "LOOP_KINDS",
    "SERVER_KINDS",
    "Backend",
    "LocalCluster",
    "RedisServer",
    "SentinelCluster",
    "TLSFiles",
    "Topology",
    "find_redis_server",
    "find_server",
    "free_port",
    "loop_factory",
    "run_on",
]
