"""comm's options in-process: each bound at its edge, each refusal's words, and the options as the report
states them (``options``)."""

from __future__ import annotations

import pytest

from envcheck.comm.app import MAX_RANKS, CommRequest
from envcheck.core.errors import CommandError


def test_the_options_are_stated_as_given():
    request = CommRequest.parse(
        device="cuda", nproc=4, timeout="0.5", ops_text="broadcast, all_reduce,broadcast", min_size="4",
        max_size="4", iters=1, warmup=1, spec_path=None,
    )  # fmt: skip
    assert request.describe() == {
        "device": "cuda", "nproc": 4, "ops": ["broadcast", "all_reduce"], "min_size": 4, "max_size": 4,
        "iters": 1, "warmup": 1, "timeout_s": 0.5, "spec": None,
    }  # fmt: skip
    default = CommRequest.parse().describe()
    assert (default["device"], default["timeout_s"], default["min_size"], default["max_size"]) == (
        "auto",
        60.0,
        None,
        None,
    )
    assert (
        CommRequest.parse(min_size="1KiB").plan.min_size == 1024
        and CommRequest.parse(max_size="1KiB").plan.max_size == 1024
    )


@pytest.mark.parametrize(
    ("options", "plan"),
    [
        ({"iters": 100_000, "warmup": 100_000}, (100_000, 100_000)),
        ({"iters": MAX_RANKS + 1}, (MAX_RANKS + 1, None)),  # the ranks' bound is --nproc's alone
    ],
)
def test_counts_at_their_upper_bounds_are_taken(options, plan):
    request = CommRequest.parse(**options)
    assert (request.plan.iters, request.plan.warmup) == plan
    assert CommRequest.parse(nproc=MAX_RANKS).nproc == MAX_RANKS and CommRequest.parse(nproc=1).nproc == 1


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"device": "gpu"}, "--device 'gpu': choose auto, cpu or cuda"),
        ({"timeout": "x" * 50}, f"--timeout must be a positive number of seconds, not {'x' * 40!r}"),
        ({"ops_text": "allreduce"},
         "unknown op 'allreduce'; choose from all_reduce, all_gather, reduce_scatter, broadcast, all_to_all, "
         "send_recv, p2p"),
        ({"min_size": "3"}, "--min-size 3: at least 4 bytes (one float32)"),
        ({"max_size": "3"}, "--max-size 3: at least 4 bytes (one float32)"),
        ({"max_size": "lots"}, "--max-size: "),
        ({"min_size": "8KiB", "max_size": "4KiB"}, "--min-size 8KiB is larger than --max-size 4KiB"),
        ({"iters": 100_001}, "--iters 100001: out of range"),
        ({"warmup": 0}, "--warmup 0: out of range"),
        ({"warmup": 100_001}, "--warmup 100001: out of range"),
        ({"nproc": 0}, "--nproc 0: out of range"),
        ({"nproc": MAX_RANKS + 1}, f"--nproc {MAX_RANKS + 1}: out of range"),
    ],
)  # fmt: skip
def test_each_refusal_says_which_option_and_why(options, words):
    with pytest.raises(CommandError) as error:
        CommRequest.parse(**options)
    assert str(error.value).startswith(words) and error.value.exit_code == 2


def test_bad_launcher_variables_are_a_usage_error_and_none_is_no_world():
    from envcheck.comm.app import joined_world

    assert joined_world({}) is None
    assert joined_world({"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "n1", "MASTER_PORT": "1"}).rank == 1
    with pytest.raises(CommandError, match="does not fit") as error:
        joined_world({"RANK": "4", "WORLD_SIZE": "4", "MASTER_ADDR": "n1", "MASTER_PORT": "1"})
    assert error.value.exit_code == 2


def test_cpu_ranks_are_two_unless_asked_and_keep_the_plan():
    from envcheck.comm.app import resolve_launch

    two = CommRequest.parse(device="cpu", ops_text="all_reduce")
    assert resolve_launch(two, {}) == (two.plan, 2)
    assert resolve_launch(CommRequest.parse(device="cpu", nproc=3), {})[1] == 3


@pytest.fixture
def gpus_seen(monkeypatch):
    """resolve_launch with torch's child faked: ``gpus_seen.gpus`` is what the device resolution finds."""
    from types import SimpleNamespace

    from envcheck.devices import resolve
    from envcheck.probes import torch as torch_probe

    state = SimpleNamespace(gpus=None, calls=[])
    info, inventory = object(), object()
    monkeypatch.setattr(torch_probe, "probe_torch", lambda env: state.calls.append(("probe", env)) or info)
    monkeypatch.setattr(resolve, "torch_ready", lambda got, *, gpus: state.calls.append(("ready", got is info, gpus)))
    monkeypatch.setattr(
        resolve, "probed_inventory", lambda got, env: state.calls.append(("inventory", got is info, env)) or inventory
    )

    def resolved(request, inv, env):
        state.calls.append(("resolve", request, inv is inventory, env))
        return state.gpus

    monkeypatch.setattr(resolve, "resolve", resolved)
    return state


@pytest.mark.parametrize(
    ("gpus", "nproc", "device", "ranks"),
    [
        (None, None, "cpu", 2),
        (None, 3, "cpu", 3),
        ((0, 1, 2), None, "cuda", 3),
        ((0, 1, 2), 2, "cuda", 2),
        ((0, 1, 2), 3, "cuda", 3),
    ],
)
def test_auto_takes_a_rank_per_gpu_torch_sees_or_two_cpu_ranks(gpus_seen, gpus, nproc, device, ranks):
    from envcheck.comm.app import resolve_launch
    from envcheck.devices.resolve import parse

    gpus_seen.gpus = gpus
    env = {"CUDA_VISIBLE_DEVICES": "0,1,2"}
    request = CommRequest.parse(nproc=nproc, ops_text="all_reduce")
    plan, got = resolve_launch(request, env)
    assert (plan.device, plan.ops, got) == (device, ("all_reduce",), ranks)
    assert gpus_seen.calls == [
        ("probe", env), ("ready", True, True), ("inventory", True, env), ("resolve", parse("auto"), True, env),
    ]  # fmt: skip


def test_more_ranks_than_gpus_is_a_usage_error(gpus_seen):
    from envcheck.comm.app import resolve_launch

    gpus_seen.gpus = (0, 1, 2)
    with pytest.raises(CommandError) as error:
        resolve_launch(CommRequest.parse(device="cuda", nproc=4), {})
    assert str(error.value) == "--nproc 4: only 3 GPU(s) are visible (one rank per GPU)" and error.value.exit_code == 2


def test_cpu_ranks_never_ask_torchs_child(gpus_seen):
    from envcheck.comm.app import resolve_launch

    assert resolve_launch(CommRequest.parse(device="cpu"), {})[1] == 2 and gpus_seen.calls == []
