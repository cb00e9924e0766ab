"""Microbenchmarks of subspace_linalg against its peers (shipped as subspace_linalg.bench).

Each suite in ``suites/`` exposes ``cases(device, dtype, quick) -> list[Case]``; the CLI
checks every case's result before timing it, times ours and the peers in one process on
the same inputs, and reports medians, ratios, errors and (CUDA) achieved bandwidth."""
