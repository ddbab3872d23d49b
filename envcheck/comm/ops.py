"""The collectives ``envcheck comm`` measures: how each one is called, how its inputs are built so that
its output is known exactly, and how its bus bandwidth is derived.

The figures are nccl-tests' (NVIDIA/nccl-tests, ``doc/PERFORMANCE.md``), so that they line up with what
every cluster team already measures:

* ``algbw = S / t``, with ``S`` the bytes of the operation as nccl-tests counts them (below);
* ``busbw = algbw × factor(n)``: the traffic each rank's link carries, independent of ``n``, which is
  what can be held against the hardware's bandwidth:

  ========================================= =================== ===================================
  op                                        factor              S
  ========================================= =================== ===================================
  all_reduce                                2(n-1)/n            the buffer each rank reduces
  all_gather, reduce_scatter, all_to_all    (n-1)/n             the total buffer, count × n × size
  broadcast, send_recv                      1                   the buffer sent
  ========================================= =================== ===================================

Verification follows nccl-tests' "verifiable" mode: every input is a small integer pattern that depends
on the rank and the element's index, so that any reduction order gives the same float32 sum bit for
bit (every partial sum stays far below 2**24), and the whole expected output can be rebuilt on the
receiving rank and compared with ``torch.equal``. Timed iterations run on zeroed buffers (their content
does not change the speed); the verified run is the first warm-up.

This module is imported by the rank processes only for its torch parts (torch is imported inside the
functions); the factors are plain Python so the report can be checked without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: float32: nccl-tests' default type, and exact for the integer patterns below.
ELEMENT_BYTES = 4
#: The period of the patterns: values stay below 64 + n, so an all_reduce sum over n ranks is at most
#: n * (63 + n), exact in float32 (24-bit mantissa) for any world under about 4000 ranks.
_PERIOD = 61
_A2A_PERIOD = 1021


def all_reduce_factor(n: int) -> float:
    return 2 * (n - 1) / n


def ring_factor(n: int) -> float:
    return (n - 1) / n


def one(n: int) -> float:
    return 1.0


@dataclass(frozen=True)
class Op:
    """One operation: its bus-bandwidth factor and whether ``S`` is the total buffer over all ranks
    (so each rank's share is ``S / n``) or one rank's buffer."""

    name: str
    factor: Callable[[int], float]
    total_buffer: bool
    title: str

    def count(self, size_bytes: int, n: int) -> int:
        """float32 elements per rank buffer (per chunk for the total-buffer ops) for about ``size_bytes``."""
        per = ELEMENT_BYTES * (n if self.total_buffer else 1)
        return max(1, size_bytes // per)

    def size_bytes(self, count: int, n: int) -> int:
        """``S`` as nccl-tests counts it for ``count`` elements per rank (per chunk)."""
        return count * ELEMENT_BYTES * (n if self.total_buffer else 1)


OPS: dict[str, Op] = {
    op.name: op
    for op in (
        Op("all_reduce", all_reduce_factor, False, "all_reduce (sum)"),
        Op("all_gather", ring_factor, True, "all_gather"),
        Op("reduce_scatter", ring_factor, True, "reduce_scatter (sum)"),
        Op("broadcast", one, False, "broadcast (from rank 0)"),
        Op("all_to_all", ring_factor, True, "all_to_all"),
        Op("send_recv", one, False, "send/recv (ring: rank r sends to r+1)"),
    )
}


def busbw(op: str, algbw: float, n: int) -> float:
    return algbw * OPS[op].factor(n)


# -- buffers and the operations themselves (torch from here on) ----------------------------------------


def pattern(rank: int, start: int, count: int, device: Any) -> torch.Tensor:
    """Rank ``rank``'s input for elements ``start .. start+count``: ``(index % 61) + rank``."""
    import torch

    index = torch.arange(start, start + count, device=device, dtype=torch.int64)
    return ((index % _PERIOD) + rank).to(torch.float32)


def summed(n: int, start: int, count: int, device: Any) -> torch.Tensor:
    """The sum over ranks 0..n-1 of :func:`pattern`: ``n * (index % 61) + n(n-1)/2``."""
    import torch

    index = torch.arange(start, start + count, device=device, dtype=torch.int64)
    return (n * (index % _PERIOD) + n * (n - 1) // 2).to(torch.float32)


def a2a_pattern(src: int, dst: int, count: int, device: Any) -> torch.Tensor:
    """What rank ``src`` sends to rank ``dst`` in all_to_all: distinct for every (src, dst) pair, so a
    chunk delivered to the wrong place is caught too."""
    import torch

    index = torch.arange(count, device=device, dtype=torch.int64)
    return ((src * 31 + dst * 7 + index) % _A2A_PERIOD).to(torch.float32)


@dataclass
class Buffers:
    """One op's buffers on one rank: ``send`` is what it contributes, ``recv`` where its result lands
    (the same tensor for the in-place all_reduce and broadcast)."""

    send: torch.Tensor
    recv: torch.Tensor


def make_buffers(op: str, count: int, rank: int, n: int, device: Any, *, verify: bool) -> Buffers:
    """Buffers for one run of ``op``: the verification pattern when ``verify``, else zeros."""
    import torch

    def filled(values: Callable[[], torch.Tensor], size: int) -> torch.Tensor:
        return values() if verify else torch.zeros(size, dtype=torch.float32, device=device)

    if op == "all_reduce":
        t = filled(lambda: pattern(rank, 0, count, device), count)
        return Buffers(t, t)
    if op == "broadcast":
        if rank == 0:
            t = filled(lambda: pattern(0, 0, count, device), count)
        else:
            t = torch.full((count,), -1.0, device=device) if verify else torch.zeros(count, device=device)
        return Buffers(t, t)
    if op == "all_gather":
        return Buffers(filled(lambda: pattern(rank, 0, count, device), count), torch.empty(count * n, device=device))
    if op == "reduce_scatter":
        return Buffers(
            filled(lambda: pattern(rank, 0, count * n, device), count * n), torch.empty(count, device=device)
        )
    if op == "all_to_all":
        send = filled(lambda: torch.cat([a2a_pattern(rank, dst, count, device) for dst in range(n)]), count * n)
        return Buffers(send, torch.empty(count * n, device=device))
    if op == "send_recv":
        return Buffers(filled(lambda: pattern(rank, 0, count, device), count), torch.empty(count, device=device))
    raise ValueError(f"unknown op {op!r}")


def run(op: str, bufs: Buffers, rank: int, n: int, group: Any = None) -> None:
    """Run ``op`` once on ``bufs`` (every rank of ``group`` calls this with the same op and count)."""
    import torch.distributed as dist

    if op == "all_reduce":
        dist.all_reduce(bufs.send, group=group)
    elif op == "all_gather":
        # Newer torch names the tensor forms *_single (the old names warn); older releases have only those.
        gather = getattr(dist, "all_gather_single", dist.all_gather_into_tensor)
        gather(bufs.recv, bufs.send, group=group)
    elif op == "reduce_scatter":
        scatter = getattr(dist, "reduce_scatter_single", dist.reduce_scatter_tensor)
        scatter(bufs.recv, bufs.send, group=group)
    elif op == "broadcast":
        dist.broadcast(bufs.send, src=0, group=group)
    elif op == "all_to_all":
        dist.all_to_all_single(bufs.recv, bufs.send, group=group)
    elif op == "send_recv":
        ops = [
            dist.P2POp(dist.isend, bufs.send, (rank + 1) % n, group=group),
            dist.P2POp(dist.irecv, bufs.recv, (rank - 1) % n, group=group),
        ]
        for work in dist.batch_isend_irecv(ops):
            work.wait()
    else:
        raise ValueError(f"unknown op {op!r}")


def expected(op: str, count: int, rank: int, n: int, device: Any) -> torch.Tensor:
    """The exact result ``op`` must leave in this rank's ``recv`` buffer after a verified run."""
    import torch

    if op == "all_reduce":
        return summed(n, 0, count, device)
    if op == "broadcast":
        return pattern(0, 0, count, device)
    if op == "all_gather":
        return torch.cat([pattern(src, 0, count, device) for src in range(n)])
    if op == "reduce_scatter":
        return summed(n, rank * count, count, device)
    if op == "all_to_all":
        return torch.cat([a2a_pattern(src, rank, count, device) for src in range(n)])
    if op == "send_recv":
        return pattern((rank - 1) % n, 0, count, device)
    raise ValueError(f"unknown op {op!r}")


def first_mismatch(got: torch.Tensor, want: torch.Tensor) -> dict[str, Any] | None:
    """None when ``got`` equals ``want`` bit for bit; else where it first differs and how many differ,
    so the report can say "element 17 of 8192: 3.0, expected 4.0 (12 wrong)"."""
    import torch

    if torch.equal(got, want):
        return None
    wrong = (got != want) | torch.isnan(got)
    index = int(torch.nonzero(wrong.flatten())[0].item()) if bool(wrong.any()) else 0
    return {
        "index": index,
        "elements": int(want.numel()),
        "wrong": int(wrong.sum().item()),
        "got": float(got.flatten()[index].item()),
        "expected": float(want.flatten()[index].item()),
    }
