"""envcheck bench: prove the GPUs compute correctly and report honest throughput per device."""
