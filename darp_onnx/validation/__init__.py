"""Checks on written models: checker and strict shapes, equivalence with the proxy, fidelity, latency."""
