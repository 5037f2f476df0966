"""Benchmarks for tierline (see bench/README.md). Not part of the installed package."""
