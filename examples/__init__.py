"""Runnable examples of greentic_session in a service (see examples/README.md)."""
