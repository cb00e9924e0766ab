"""Benchmark suites, one module per family; each exposes cases(device, dtype, quick)."""
