"""Peer comparisons: the same work through TallyIO and through what a Python user would use
instead, timed in the same process and printed as a table of ns per operation and ratios.

Each area is a module here with ``run(quick: bool) -> list[Comparison]``; ``AREAS`` lists them in
the order ``tallyio bench`` prints them.
"""
AREAS = ("core", "wake", "pool", "prefetch", "simd", "cache", "breaker", "batch_processor", "system", "amm",
         "book")
