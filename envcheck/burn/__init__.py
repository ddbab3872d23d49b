"""``envcheck burn``: sustained load on every GPU, watched through the card's own telemetry.

Built in layers like the rest of envcheck: :mod:`envcheck.probes.nvml.telemetry` samples NVML (the probe),
:mod:`envcheck.burn.rules` judges a run's timeline (pure functions, tested without hardware); the workers
that load the GPUs, the command and the report sit on top of these.
"""
