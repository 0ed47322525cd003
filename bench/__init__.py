"""Benchmarks. Each prints ratios against a baseline measured in the same run, because the
machines are noisy (2 shared cores): absolute numbers from another run mean little."""
