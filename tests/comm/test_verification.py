"""comm's verification in-process on the CPU: the integer patterns each rank sends, the exact result each
collective must leave on each rank (against the collective done by hand over every rank's buffers), and
how a wrong result is located. Small cases are written out by hand."""

from __future__ import annotations

import pytest
import torch

from envcheck.comm import ops

OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "all_to_all", "send_recv")


def _list(t: torch.Tensor) -> list[float]:
    assert t.dtype == torch.float32
    return t.tolist()


def test_the_patterns_by_hand():
    assert _list(ops.pattern(2, 0, 4, "cpu")) == [2.0, 3.0, 4.0, 5.0]  # (index % 61) + rank
    assert _list(ops.pattern(1, 59, 4, "cpu")) == [60.0, 61.0, 1.0, 2.0]  # index 61 wraps to 0
    assert _list(ops.summed(3, 0, 2, "cpu")) == [3.0, 6.0]  # 3 * (index % 61) + 3 * 2 / 2
    assert _list(ops.summed(4, 60, 2, "cpu")) == [246.0, 6.0]  # 4 * 60 + 6, then index 61: 4 * 0 + 6
    assert _list(ops.a2a_pattern(1, 2, 3, "cpu")) == [45.0, 46.0, 47.0]  # 1 * 31 + 2 * 7 + index
    assert _list(ops.a2a_pattern(32, 3, 10, "cpu"))[7:] == [1020.0, 0.0, 1.0]  # 992 + 21 + index, mod 1021


def _by_hand(op: str, sends: list[torch.Tensor], count: int, n: int) -> list[torch.Tensor]:
    """What each rank's receive buffer holds after ``op``, done by hand over every rank's send buffer."""
    if op == "all_reduce":
        return [sum(sends)] * n
    if op == "broadcast":
        return [sends[0]] * n
    if op == "all_gather":
        return [torch.cat(sends)] * n
    if op == "reduce_scatter":
        total = sum(sends)
        return [total[r * count : (r + 1) * count] for r in range(n)]
    if op == "all_to_all":
        return [torch.cat([sends[src][dst * count : (dst + 1) * count] for src in range(n)]) for dst in range(n)]
    return [sends[(r - 1) % n] for r in range(n)]  # send_recv: rank r receives from r - 1


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("op", OPS)
def test_the_expected_result_is_the_collective_done_by_hand(op, n):
    count = 70  # past the pattern's period of 61
    bufs = [ops.make_buffers(op, count, r, n, "cpu", verify=True) for r in range(n)]
    sends = [b.send for b in bufs]
    want = _by_hand(op, sends, count, n)
    for r in range(n):
        assert torch.equal(ops.expected(op, count, r, n, "cpu"), want[r]), (op, n, r)
        assert bufs[r].recv.dtype == torch.float32 and bufs[r].recv.numel() == want[r].numel()


@pytest.mark.parametrize("op", OPS)
def test_timed_buffers_are_zeros_of_the_same_shape(op):
    verified = ops.make_buffers(op, 8, 1, 3, "cpu", verify=True)
    timed = ops.make_buffers(op, 8, 1, 3, "cpu", verify=False)
    assert timed.send.shape == verified.send.shape and timed.recv.shape == verified.recv.shape
    assert not timed.send.any() and timed.send.dtype == torch.float32
    assert (timed.send is timed.recv) == (op in ("all_reduce", "broadcast"))


def test_a_broadcast_receiver_starts_from_a_value_no_pattern_has():
    """Its buffer is -1 everywhere until the broadcast lands: a broadcast that never arrived is wrong."""
    bufs = ops.make_buffers("broadcast", 4, 2, 3, "cpu", verify=True)
    assert _list(bufs.recv) == [-1.0] * 4 and bufs.send is bufs.recv
    assert _list(ops.make_buffers("broadcast", 4, 0, 3, "cpu", verify=True).send) == [0.0, 1.0, 2.0, 3.0]


def test_an_unknown_op_is_refused():
    for call in (
        lambda: ops.make_buffers("gossip", 1, 0, 1, "cpu", verify=True),
        lambda: ops.expected("gossip", 1, 0, 1, "cpu"),
    ):
        with pytest.raises(ValueError, match="unknown op 'gossip'"):
            call()


def test_a_wrong_result_is_located_at_its_first_wrong_element_with_the_count():
    want = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert ops.first_mismatch(want.clone(), want) is None
    got = torch.tensor([1.0, 2.0, 9.0, 4.0, 7.0])
    assert ops.first_mismatch(got, want) == {"index": 2, "elements": 5, "wrong": 2, "got": 9.0, "expected": 3.0}
    nan = torch.tensor([1.0, float("nan"), 3.0, 4.0, 5.0])
    assert ops.first_mismatch(nan, want)["index"] == 1 and ops.first_mismatch(nan, want)["wrong"] == 1


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("rank", [0, 1])
@pytest.mark.parametrize("op", OPS)
def test_every_buffer_and_expected_result_is_on_the_ranks_device(op, rank, verify):
    """On a GPU a buffer left on the CPU fails NCCL (or is copied on every call): each tensor is made on
    the device asked for. torch's "meta" device stands for a GPU here: a tensor made without the
    device lands on the CPU instead."""
    bufs = ops.make_buffers(op, 8, rank, 3, "meta", verify=verify)
    assert (bufs.send.device.type, bufs.recv.device.type) == ("meta", "meta")
    assert bufs.send.dtype == bufs.recv.dtype == torch.float32
    assert ops.expected(op, 8, rank, 3, "meta").device.type == "meta"
