"""Benchmarks (not tests): timing and memory of umlkit components, runnable as modules."""
