"""Benchmarks: speed targets as ratios measured in one run (see bench/README.md)."""
