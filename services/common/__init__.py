"""Plumbing every service uses the same way (logging, Kafka, settings).

This is a library, not a service: it holds no state and talks to nobody on
its own, so services may import it as they import ``schemas``.
"""
