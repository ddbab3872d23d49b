"""The ground floor every other layer imports downward: the result model, the registries, the probe
contract checks rely on, the exit-code policy and the report envelope.

Nothing here imports a probe, a check, a benchmark or a renderer, and nothing here imports torch, rich
or NVML: the healthcheck path loads this package every 30 s.
"""
