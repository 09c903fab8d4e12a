"""Adapters: the ports implemented with Google's official SDKs.

Each adapter creates its client lazily, on first use, so importing a function module is cheap and
needs no credentials. SDK exceptions are translated into batchbox's own here, and only here.
"""
