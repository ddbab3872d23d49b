"""On a real GPU: the load's results are bit for bit the first result (cuBLAS is deterministic for one GEMM
on one stream), in every dtype, and the working set leaves the margin free. Skipped without CUDA;
benchmarks/gpu_check.sh runs them with `pytest -m gpu` and burns every GPU for a minute."""

from __future__ import annotations

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "tf32", "fp32"])
def test_every_result_is_bit_for_bit_the_first(dtype):
    from envcheck.burn.load import Load, Shape

    work = Load("cuda", dtype, Shape(2048, 8, 4 if dtype in ("tf32", "fp32") else 2))
    for _ in range(50):
        work.step()
    checked = work.check()
    assert work.exact and checked.compared == 9 and checked.mismatched == 0
    work.outputs[3].view(-1)[5] += 1  # one wrong value in one output is found
    assert work.check().mismatched == 1


def test_the_working_set_fits_in_free_memory_less_the_margin():
    from envcheck.burn.load import MARGIN_BYTES, plan_shape

    free, _ = torch.cuda.mem_get_info(0)
    shape = plan_shape(cuda=True, dtype="bf16", free_bytes=free)
    assert shape.buffers >= 1 and shape.total_bytes <= free - MARGIN_BYTES
