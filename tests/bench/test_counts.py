"""Each benchmark's work per step (FLOPs or bytes), against a hand count, on the CPU at small sizes: the
figure is this number divided by the measured time, so a wrong factor here is a wrong figure everywhere.
Where torch can count the FLOPs of the step itself (``torch.utils.flop_counter``), that count must agree too."""

from __future__ import annotations

import pytest
from torch.utils.flop_counter import FlopCounterMode

from envcheck.bench.benchmarks import attention, conv, matmul, memory, train
from envcheck.devices.model import DeviceInfo

MiB = 1 << 20


@pytest.fixture
def cpu() -> DeviceInfo:
    return DeviceInfo("cpu", "cpu", "test cpu", threads=1)


def counted(step) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def test_matmul_is_two_flops_per_multiply_add(cpu):
    # A (64×16) @ B (16×32): 64·32 outputs, each 16 multiply-adds of 2 FLOPs.
    wl = matmul.build_matmul(cpu, "fp32", 64, 32, 16, "count")
    assert (wl.work_per_step, wl.work_unit, wl.peak_key) == (2 * 64 * 32 * 16, "flop", "fp32")
    assert wl.work_per_step == 65_536 == counted(wl.step)
    assert wl.verify().passed


@pytest.mark.parametrize("backward", [False, True])
def test_conv_block_is_two_3x3_convolutions_and_the_backward_twice_the_forward(cpu, backward):
    # One 3x3 convolution, N=2, C=8→8, 6×6 out (padded): 2·N·C·C·9·H·W = 2·2·8·8·9·36 = 82 944 FLOPs; the block
    # has two. The backward computes the input and the weight gradients: twice the forward again.
    wl = conv.build_block(cpu, "fp32", "nchw", backward, 2, 8, 6)
    one_conv = 2 * 2 * 8 * 8 * 9 * 36
    assert one_conv == 82_944
    assert wl.work_per_step == 2 * one_conv * (3 if backward else 1)
    assert (wl.work_unit, wl.images_per_step) == ("flop", 2)
    if not backward:
        assert counted(wl.step) == wl.work_per_step  # torch counts the convolutions alone, as we do
    wl.step()
    assert wl.verify().passed


@pytest.mark.parametrize(
    ("causal", "backward", "expected"),
    [
        # Q·Kᵀ and P·V: 2 matmuls of B·H·S·S·D multiply-adds, 2 FLOPs each: 4·1·2·16·16·8 = 16 384.
        (False, False, 16_384),
        (True, False, 8_192),  # causal: half the score matrix (FlashAttention's convention)
        (False, True, 16_384 * 3.5),  # backward 2.5 times the forward (FlashAttention's count)
        (True, True, 8_192 * 3.5),
    ],
)
def test_attention_counts_the_two_matmuls(cpu, causal, backward, expected):
    wl = attention.build_attention(cpu, "fp32", 8, causal, backward, 1, 2, 16)
    assert (wl.work_per_step, wl.work_unit) == (expected, "flop")  # (torch's counter sees no FLOPs in the CPU
    # flash kernel, so the hand count stands alone here)
    wl.step()
    assert wl.verify().passed


def test_device_copy_counts_the_read_and_the_write(cpu):
    wl = memory.build_d2d(cpu, 4 * MiB)
    assert (wl.work_per_step, wl.work_unit, wl.peak_key) == (8 * MiB, "byte", "memory")
    wl.step()
    assert wl.verify().passed


def test_a_training_step_counts_images():
    cpu = DeviceInfo("cpu", "cpu", "test cpu", threads=1)
    wl = train.build_train(cpu, False, 4)
    assert (wl.work_per_step, wl.work_unit, wl.images_per_step) == (4, "image", 4)
