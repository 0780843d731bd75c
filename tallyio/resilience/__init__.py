"""Resilience: the latency-aware circuit breaker and the micro-batching processor."""
