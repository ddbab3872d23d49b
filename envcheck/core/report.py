"""The envelope every report carries, whatever command made it, so that a consumer (a fleet merge, a
dashboard, a person pasting into an issue) can tell which machine, which GPUs, which envcheck and when
without knowing the command.

Every command's JSON document is ``{**envelope(...), **its own fields}``. The schema names
(``envcheck.doctor/1``, ``envcheck.bench/1``) stay: fields are only ever added under a schema version.
"""

from __future__ import annotations

import platform
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from envcheck import __version__
from envcheck.core.model import Status, displayable, to_jsonable, worst

#: Every report kind's schema, ``envcheck.<package>/<version>``: the package that writes it is also the one
#: whose ``render`` module renders it (:mod:`envcheck.render` finds it by this name, so no renderer and no
#: reader switches on a list of kinds). Fields are only ever added under a version.
DOCTOR_SCHEMA = "envcheck.doctor/1"
BENCH_SCHEMA = "envcheck.bench/1"
BURN_SCHEMA = "envcheck.burn/1"
COMM_SCHEMA = "envcheck.comm/1"
FLEET_SCHEMA = "envcheck.fleet/1"
EXPLAIN_SCHEMA = "envcheck.explain/1"

_SCHEMA = re.compile(r"^envcheck\.([a-z][a-z_]*)/([0-9]{1,6})$")


def kind_of(schema: object) -> str | None:
    """The package a schema names (``"envcheck.bench/1"`` → ``"bench"``); None for anything that is not
    one of envcheck's schema names, so a hostile or odd document can never name a module to load."""
    match = _SCHEMA.match(schema) if isinstance(schema, str) else None
    return match.group(1) if match else None


@dataclass(frozen=True)
class HostIdentity:
    """Which machine: enough to tell two reports apart in a fleet, nothing secret."""

    hostname: str
    os: str
    kernel: str
    python: str
    platform: str
    #: ``docker``, ``podman``, ``kubernetes``, ... or None on bare metal / a VM (and when not probed).
    container: str | None = None

    @classmethod
    def here(cls, container: str | None = None) -> HostIdentity:
        """This machine, its names from ``uname`` decoded once for display (:func:`host_name`)."""
        return cls(
            hostname=host_name(),
            os=displayable(platform.system()),
            kernel=displayable(platform.release()),
            python=sys.version.split()[0],
            platform=displayable(platform.platform()),
            container=container,
        )

    def to_json(self) -> dict[str, Any]:
        # Through to_jsonable: an identity made from a name that was never decoded (a rank's, a test's)
        # is still writable.
        return to_jsonable(
            {
                "hostname": self.hostname,
                "os": self.os,
                "kernel": self.kernel,
                "python": self.python,
                "platform": self.platform,
                "container": self.container,
            }
        )


def host_name() -> str:
    """This machine's name as every report shows it. The kernel keeps the name as bytes and any byte may be
    in it (``sethostname`` checks nothing); Python hands a byte that is not UTF-8 on as a surrogate, which
    no UTF-8 report can hold: it is shown as U+FFFD (:func:`envcheck.core.model.displayable`)."""
    return displayable(platform.node())


@dataclass(frozen=True)
class GpuIdentity:
    """Which GPU, in the driver's terms: the uuid and PCI bus id survive re-indexing by
    ``CUDA_VISIBLE_DEVICES`` and reboots, so reports from different runs can be lined up."""

    index: int
    name: str | None
    uuid: str | None
    pci_bus_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "uuid": self.uuid, "pci_bus_id": self.pci_bus_id}


@dataclass(frozen=True)
class Summary:
    """The run in one line, the same shape in every kind's document (cf. black's ``Report``): ``verdict``,
    one word a script can switch on; ``text``, the line every format ends with; and the kind's own counts,
    kept beside them (the fields each kind's summary has always had).

    The doctor's verdicts are ``ready``, ``ready_cpu``, ``warnings``, ``not_ready`` and
    ``nothing_checked``; every measuring command's are those of :func:`verdict_of`."""

    verdict: str
    text: str
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**self.counts, "verdict": self.verdict, "text": self.text}


def verdict_of(statuses: list[Status], *, interrupted: bool = False) -> str:
    """A measuring run's verdict word: ``interrupted`` (the report covers what ran), ``failed`` (a failure or
    a crash), ``warnings``, or ``passed``."""
    if interrupted:
        return "interrupted"
    overall = worst(statuses)
    if overall.is_problem:
        return "failed"
    return "warnings" if overall is Status.WARN else "passed"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def envelope(
    schema: str,
    *,
    generated_at: datetime,
    duration_s: float,
    host: HostIdentity,
    gpus: list[GpuIdentity] | None = None,
) -> dict[str, Any]:
    """The fields every report starts with. ``gpus`` is present where GPUs were seen (a command may
    add more per-GPU fields under the same key, as the doctor does)."""
    doc: dict[str, Any] = {
        "schema": schema,
        "envcheck_version": __version__,
        "generated_at": generated_at.isoformat(timespec="seconds"),
        "duration_s": round(duration_s, 3),
        "host": host.to_json(),
    }
    if gpus is not None:
        doc["gpus"] = [g.to_json() for g in gpus]
    return doc


def p2p_nodes(p2p: Any) -> list[dict[str, Any]]:
    """An envcheck.comm/1 document's P2P blocks, one per node (``host``, ``ranks``, ``matrix``): its
    ``nodes``, or the one matrix a document from before they existed has (the spec's judge and the
    renderers read both)."""
    if not isinstance(p2p, dict):
        return []
    nodes = p2p.get("nodes")
    if isinstance(nodes, list):
        return [n for n in nodes if isinstance(n, dict) and isinstance(n.get("ranks"), list)]
    if isinstance(p2p.get("ranks"), list):
        return [{"host": None, "ranks": p2p["ranks"], "matrix": p2p.get("matrix") or []}]
    return []
