"""The small CNN training loop the project started from, measured as images/s, and proven to learn.

The model: two 3×3 conv layers (32 and 64 channels) each with ReLU and 2×2 max-pooling, then two fully
connected layers to 10 classes, on 32×32×3 images; cross-entropy; SGD with momentum. The flattened size
is derived from the input shape by running the feature layers once, so it cannot disagree with them
(the original script hard-coded it and broke whenever the input size changed).

"Learns" is checked on a fixed, learnable synthetic task: every class has a random template image and
a sample is its template plus as much noise again. A fresh model with a fixed seed trains for a fixed
number of steps; the loss on a held-out batch must fall to under half its starting value, or the
figure is reported as not verified. A speed is worthless from a step that does not train.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envcheck.bench import common
from envcheck.bench.model import Check, Options, Plan, Workload, benchmark
from envcheck.devices.model import DeviceInfo

if TYPE_CHECKING:
    import torch

INPUT_SHAPE = (3, 32, 32)
CLASSES = 10
LEARNING_RATE = 0.01
MOMENTUM = 0.9
#: The held-out loss must end below this fraction of where it started (ln 10 ≈ 2.3 at random init). A
#: correct loop ends near 0.002 of it after VERIFY_STEPS (measured), so the limit leaves a wide margin.
LOSS_RATIO_LIMIT = 0.5
VERIFY_STEPS = 60
VERIFY_BATCH = 32
#: Pre-generated batches the timed loop cycles through, so data generation stays out of the timing.
POOL = 4


def make_model(input_shape: tuple[int, int, int] = INPUT_SHAPE, classes: int = CLASSES) -> torch.nn.Module:
    """The CNN; the first linear layer's width follows from ``input_shape`` instead of being hard-coded."""
    import torch
    from torch import nn

    features = nn.Sequential(
        nn.Conv2d(input_shape[0], 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )
    with torch.no_grad():
        flat = features(torch.zeros(1, *input_shape)).numel()
    return nn.Sequential(features, nn.Flatten(), nn.Linear(flat, 128), nn.ReLU(), nn.Linear(128, classes))


def seeded_model(seed: int, device: str) -> torch.nn.Module:
    """The model with reproducible initial weights, leaving the caller's global RNG state as it was."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)  # CPU only: the weights are drawn on the CPU
        return make_model().to(device)


def synthetic_batches(device: str, batch: int, count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` batches of the template task (the templates are fixed, the draws depend on ``seed``)."""
    import torch

    templates = torch.randn((CLASSES, *INPUT_SHAPE), generator=torch.Generator().manual_seed(1234)).to(device)
    gen = common.generator(device, seed)
    batches = []
    for _ in range(count):
        labels = torch.randint(0, CLASSES, (batch,), device=device, generator=gen)
        images = templates[labels] + common.randn((batch, *INPUT_SHAPE), torch.float32, device, gen)
        batches.append((images, labels))
    return batches


def make_step(model: torch.nn.Module, dev: DeviceInfo, amp: bool) -> Any:
    """One training step (forward, loss, backward, SGD update), in bf16 autocast when ``amp``."""
    import torch
    import torch.nn.functional as F

    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    device_type = dev.kind  # autocast's device type: "cuda" or "cpu"

    def train_step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(images), labels)
        loss.backward()
        opt.step()
        return loss

    return train_step


def learns(dev: DeviceInfo, amp: bool) -> Check:
    """Train a fresh, seeded model on the template task; pass when the held-out loss halves."""
    import torch
    import torch.nn.functional as F

    model = seeded_model(0, dev.torch_device)
    train_step = make_step(model, dev, amp)
    (held_x, held_y), *train = synthetic_batches(dev.torch_device, VERIFY_BATCH, 9, seed=99)

    def held_out_loss() -> float:
        with torch.no_grad(), torch.autocast(device_type=dev.kind, dtype=torch.bfloat16, enabled=amp):
            return float(F.cross_entropy(model(held_x), held_y))

    before = held_out_loss()
    for i in range(VERIFY_STEPS):
        train_step(*train[i % len(train)])
    after = held_out_loss()
    ratio = after / before if before > 0 else float("nan")
    passed = ratio == ratio and ratio < LOSS_RATIO_LIMIT
    detail = (
        f"held-out loss {before:.3f} -> {after:.3f} after {VERIFY_STEPS} steps (must fall below {LOSS_RATIO_LIMIT:.0%})"
    )
    return Check(passed, ratio, LOSS_RATIO_LIMIT, "learnable synthetic task (class templates + noise)", detail)


def build_train(dev: DeviceInfo, amp: bool, batch: int) -> Workload:

    device = dev.torch_device
    model = seeded_model(1, device)
    train_step = make_step(model, dev, amp)
    pool = synthetic_batches(device, batch, POOL, seed=common.case_seed("train", amp, batch))
    counter = [0]

    def step() -> None:
        images, labels = pool[counter[0] % POOL]
        counter[0] += 1
        train_step(images, labels)

    return Workload(
        case=f"{'bf16 autocast' if amp else 'fp32'} batch {batch}",
        params={
            "batch": batch,
            "amp": "bf16" if amp else None,
            "optimizer": "SGD",
            "lr": LEARNING_RATE,
            "momentum": MOMENTUM,
            "input_shape": list(INPUT_SHAPE),
            "classes": CLASSES,
        },
        step=step,
        verify=lambda: learns(dev, amp),
        work_per_step=batch,
        work_unit="image",
        peak_key=None,
        images_per_step=batch,
    )


def _batch(dev: DeviceInfo, opts: Options) -> int:
    return 512 if dev.is_cuda else (32 if opts.quick else 64)


@benchmark("train.cnn", "small CNN training step", host_bound=True)
def train_cnn(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """Small CNN (2 conv + 2 FC, 32×32×3, SGD+momentum) training step in fp32: images/s, loss must fall."""
    if not opts.wants("fp32"):
        return []
    batch = _batch(dev, opts)
    return [Plan("fp32", "fp32", lambda scale: build_train(dev, False, max(1, int(batch * scale))))]


@benchmark("train.cnn_amp", "small CNN training step, bf16 autocast", host_bound=True)
def train_cnn_amp(dev: DeviceInfo, opts: Options) -> list[Plan]:
    """The same training step under bf16 autocast (mixed precision, GPU): images/s, loss must fall."""
    if not opts.wants("bf16"):
        return []
    if not dev.is_cuda:
        return [Plan("bf16 autocast", "bf16", skip="mixed precision is benchmarked on GPUs only")]
    if (dev.capability or (0, 0)) < (8, 0):
        return [Plan("bf16 autocast", "bf16", skip="bf16 autocast needs compute capability 8.0 (Ampere) or newer")]
    batch = _batch(dev, opts)
    return [Plan("bf16 autocast", "bf16", lambda scale: build_train(dev, True, max(1, int(batch * scale))))]
