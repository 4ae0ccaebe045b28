"""Benchmarks (``make bench``): speed ratios, throughput and memory, printed as figures."""
