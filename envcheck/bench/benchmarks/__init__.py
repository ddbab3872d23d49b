"""Importing this module registers every benchmark, in suite order (the registry loads it by name)."""

from envcheck.bench.benchmarks import attention, compile, conv, matmul, memory, train  # noqa: F401
