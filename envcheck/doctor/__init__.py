"""The doctor, the main command: its checks (one module per area), the probe runner, ``run_doctor`` (the
one way every command runs it), the report and the healthcheck dialects."""
