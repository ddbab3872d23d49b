"""The dense datasheet peaks, each pinned against its source: the figure the vendor prints, and the
dense rate worked out here by hand (sparse "*" figures halved). A fraction of peak is only as true as this
table, and one mistyped digit would make every card of that model look slow or impossibly fast.

The quoted figures are those of the documents named (NVIDIA's product datasheets, and the Ampere GA102 and
Ada architecture whitepapers for the GeForce cards, whose tensor rates are the FP32-accumulate ones)."""

from __future__ import annotations

import pytest

from envcheck.bench import peaks

SPARSE = 0.5  # a "with sparsity" (2:4) figure: the dense rate is half
DENSE = 1.0

#: (device name, dtype, the figure the source prints in TFLOP/s, whether it is a sparse one, the source)
TENSOR = [
    ("Tesla V100-SXM2-32GB", "fp32", 15.7, DENSE, "V100 datasheet, SXM2: FP32 15.7"),
    ("Tesla V100-SXM2-32GB", "fp16", 125, DENSE, "V100 datasheet, SXM2: Tensor Performance 125"),
    ("Tesla V100-PCIE-32GB", "fp16", 112, DENSE, "V100 datasheet, PCIe: Tensor Performance 112"),
    ("Tesla V100S-PCIE-32GB", "fp16", 130, DENSE, "V100S datasheet: Tensor Performance 130"),
    ("NVIDIA A10", "fp32", 31.2, DENSE, "A10 datasheet: FP32 31.2"),
    ("NVIDIA A10", "tf32", 125, SPARSE, "A10 datasheet: TF32 Tensor Core 125*"),
    ("NVIDIA A10", "bf16", 250, SPARSE, "A10 datasheet: BF16 Tensor Core 250*"),
    ("NVIDIA A100-SXM4-80GB", "fp32", 19.5, DENSE, "A100 datasheet: FP32 19.5"),
    ("NVIDIA A100-SXM4-80GB", "tf32", 312, SPARSE, "A100 datasheet: TF32 Tensor Core 156 | 312*"),
    ("NVIDIA A100-SXM4-80GB", "bf16", 624, SPARSE, "A100 datasheet: BF16 Tensor Core 312 | 624*"),
    ("NVIDIA A100 80GB PCIe", "fp16", 624, SPARSE, "A100 datasheet: FP16 Tensor Core 312 | 624*"),
    ("NVIDIA L4", "tf32", 120, SPARSE, "L4 datasheet: TF32 Tensor Core 120*"),
    ("NVIDIA L4", "bf16", 242, SPARSE, "L4 datasheet: BF16 Tensor Core 242*"),
    ("NVIDIA L4", "fp8", 485, SPARSE, "L4 datasheet: FP8 Tensor Core 485*"),
    ("NVIDIA L40S", "fp32", 91.6, DENSE, "L40S datasheet: FP32 91.6"),
    ("NVIDIA L40S", "tf32", 366, SPARSE, "L40S datasheet: TF32 Tensor Core 183 | 366*"),
    # The L40S datasheet prints its dense BF16/FP16 figure itself, 362.05, a little under half of 733*.
    ("NVIDIA L40S", "bf16", 362.05, DENSE, "L40S datasheet: BF16 Tensor Core 362.05 | 733*"),
    ("NVIDIA L40S", "fp8", 1466, SPARSE, "L40S datasheet: FP8 Tensor Core 733 | 1,466*"),
    ("NVIDIA GeForce RTX 3090", "fp32", 35.6, DENSE, "GA102 whitepaper, RTX 3090: peak FP32 35.6"),
    ("NVIDIA GeForce RTX 3090", "bf16", 71, DENSE, "GA102 whitepaper, RTX 3090: BF16 tensor, FP32 accumulate 71"),
    ("NVIDIA GeForce RTX 4090", "fp32", 82.6, DENSE, "Ada whitepaper, RTX 4090: peak FP32 82.6"),
    ("NVIDIA GeForce RTX 4090", "fp16", 165.2, DENSE, "Ada whitepaper, RTX 4090: FP16 tensor, FP32 accumulate"),
    ("NVIDIA GeForce RTX 4090", "fp8", 330.3, DENSE, "Ada whitepaper, RTX 4090: FP8 tensor, FP32 accumulate"),
    ("NVIDIA H100 80GB HBM3", "fp32", 67, DENSE, "H100 datasheet, SXM: FP32 67"),
    ("NVIDIA H100 80GB HBM3", "tf32", 989, SPARSE, "H100 datasheet, SXM: TF32 Tensor Core 989*"),
    ("NVIDIA H100 80GB HBM3", "bf16", 1979, SPARSE, "H100 datasheet, SXM: BF16 Tensor Core 1,979*"),
    ("NVIDIA H100 80GB HBM3", "fp8", 3958, SPARSE, "H100 datasheet, SXM: FP8 Tensor Core 3,958*"),
    ("NVIDIA H100 PCIe", "fp32", 51, DENSE, "H100 datasheet, PCIe: FP32 51"),
    ("NVIDIA H100 PCIe", "tf32", 756, SPARSE, "H100 datasheet, PCIe: TF32 Tensor Core 756*"),
    ("NVIDIA H100 PCIe", "bf16", 1513, SPARSE, "H100 datasheet, PCIe: BF16 Tensor Core 1,513*"),
    ("NVIDIA H100 PCIe", "fp8", 3026, SPARSE, "H100 datasheet, PCIe: FP8 Tensor Core 3,026*"),
    ("NVIDIA H200", "bf16", 1979, SPARSE, "H200 datasheet, SXM: BF16 Tensor Core 1,979*"),
    ("NVIDIA H200", "fp8", 3958, SPARSE, "H200 datasheet, SXM: FP8 Tensor Core 3,958*"),
    ("NVIDIA B200", "fp32", 75, DENSE, "HGX B200 datasheet, per GPU: FP32 75"),
    ("NVIDIA B200", "tf32", 2200, SPARSE, "HGX B200 datasheet, per GPU: TF32 Tensor Core 2.2 PFLOPS*"),
    ("NVIDIA B200", "bf16", 4500, SPARSE, "HGX B200 datasheet, per GPU: FP16/BF16 Tensor Core 4.5 PFLOPS*"),
    ("NVIDIA B200", "fp8", 9000, SPARSE, "HGX B200 datasheet, per GPU: FP8 Tensor Core 9 PFLOPS*"),
]

#: (device name, memory bandwidth in GB/s as the source prints it, the source)
MEMORY = [
    ("Tesla V100-SXM2-32GB", 900, "V100 datasheet: HBM2 900 GB/s"),
    ("Tesla V100S-PCIE-32GB", 1134, "V100S datasheet: 1134 GB/s"),
    ("NVIDIA A10", 600, "A10 datasheet: GDDR6 600 GB/s"),
    ("NVIDIA A100-SXM4-40GB", 1555, "A100 datasheet, 40GB: HBM2 1,555 GB/s"),
    ("NVIDIA A100-SXM4-80GB", 2039, "A100 datasheet, 80GB SXM: HBM2e 2,039 GB/s"),
    ("NVIDIA A100 80GB PCIe", 1935, "A100 datasheet, 80GB PCIe: HBM2e 1,935 GB/s"),
    ("NVIDIA L4", 300, "L4 datasheet: 300 GB/s"),
    ("NVIDIA L40S", 864, "L40S datasheet: 864 GB/s"),
    ("NVIDIA GeForce RTX 3090", 936, "GA102 whitepaper, RTX 3090: 936 GB/s"),
    ("NVIDIA GeForce RTX 4090", 1008, "Ada whitepaper, RTX 4090: 1008 GB/s"),
    ("NVIDIA H100 80GB HBM3", 3350, "H100 datasheet, SXM: 3.35 TB/s"),
    ("NVIDIA H100 PCIe", 2000, "H100 datasheet, PCIe: 2 TB/s"),
    ("NVIDIA H200", 4800, "H200 datasheet: HBM3e 4.8 TB/s"),
    ("NVIDIA B200", 7700, "HGX B200 datasheet, per GPU: HBM3e 7.7 TB/s"),
]


@pytest.mark.parametrize(
    ("name", "dtype", "printed", "dense", "source"), TENSOR, ids=[f"{n} {d}" for n, d, *_ in TENSOR]
)
def test_each_dense_peak_is_its_source_s_figure(name, dtype, printed, dense, source):
    entry = peaks.lookup(name)
    assert entry is not None, source
    assert entry.for_key(dtype) == pytest.approx(printed * dense, rel=1e-9), source
    # The entry names its document, so a reader can check it.
    assert any(word in entry.source for word in ("datasheet", "whitepaper")), entry.source


@pytest.mark.parametrize(("name", "gbs", "source"), MEMORY, ids=[n for n, *_ in MEMORY])
def test_each_memory_bandwidth_is_its_source_s_figure(name, gbs, source):
    entry = peaks.lookup(name)
    assert entry is not None and entry.for_key("memory") == gbs, source


def test_fp16_equals_bf16_and_no_rate_is_invented_for_a_dtype_the_card_lacks():
    for entry in peaks.PEAKS:
        if "bf16" in entry.tflops and "fp16" in entry.tflops:
            assert entry.tflops["fp16"] == entry.tflops["bf16"], entry.model
    v100 = peaks.lookup("Tesla V100-SXM2-32GB")
    assert v100.for_key("bf16") is None and v100.for_key("tf32") is None  # Volta has neither
    assert peaks.lookup("NVIDIA A100-SXM4-40GB").for_key("fp8") is None  # nor has Ampere FP8
