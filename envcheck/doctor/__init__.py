"""The doctor, the main command: its checks (one module per area), the probe runner, the report
and the healthcheck dialects."""
