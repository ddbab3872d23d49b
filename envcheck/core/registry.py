"""One generic registry, and the shape of a check. The registries themselves live with what they hold:
probes in :mod:`envcheck.probes.registry`, the doctor's checks and areas in :mod:`envcheck.doctor.areas`,
benchmarks in :mod:`envcheck.bench.model`, output formats in :mod:`envcheck.render`.

An item is registered where it is defined (cf. brew's diagnostic checks), so adding a check, a probe or
a benchmark touches one file; listing them (``--list-checks``, ``bench --list``) and "run only these"
(ids or group names) come from the same code for all three. A registry fills itself on first use by
importing the package that defines its items *by name*, so this ground floor never imports a layer
above it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from envcheck.core.model import Verdict

if TYPE_CHECKING:
    from envcheck.core.probing import Context


class Item(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=Item)


class UnknownSelection(ValueError):
    """An id or group the user named that does not exist (exit code 2)."""


class Registry(Generic[T]):
    """Items keyed by a stable dotted id (``gpu.ecc``, ``matmul.bf16``); the part before the first dot is
    the item's group (area or family), and ``groups`` gives the order groups are run and shown in."""

    def __init__(
        self,
        kind: str,
        groups: Mapping[str, str] | None = None,
        *,
        group_word: str = "groups",
        package: str | None = None,
    ) -> None:
        self.kind = kind
        self.group_word = group_word
        #: group id -> title, in report order; None: any group, in registration order.
        self.groups = groups
        self._package = package
        self._loaded = package is None
        self._items: dict[str, T] = {}

    def add(self, item: T) -> T:
        if item.id in self._items:
            raise ValueError(f"duplicate {self.kind} id {item.id}")
        if self.groups is not None and group_of(item.id) not in self.groups:
            raise ValueError(f"{self.kind} {item.id} is in no known group ({', '.join(self.groups)})")
        self._items[item.id] = item
        return item

    def load(self) -> None:
        """Import the package whose modules register this registry's items (idempotent)."""
        if not self._loaded and self._package:
            self._loaded = True
            importlib.import_module(self._package)

    def __getitem__(self, item_id: str) -> T:
        if item_id not in self._items:
            self.load()
        return self._items[item_id]

    def __setitem__(self, item_id: str, item: T) -> None:
        """Replace or add an item by id (tests swap a probe for one over fake data)."""
        self._items[item_id] = item

    def __delitem__(self, item_id: str) -> None:
        del self._items[item_id]

    def __contains__(self, item_id: object) -> bool:
        if item_id not in self._items:
            self.load()
        return item_id in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, item_id: str, default: Any = None) -> Any:
        if item_id not in self._items:
            self.load()
        return self._items.get(item_id, default)

    def values(self) -> list[T]:
        return list(self._items.values())

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def ordered(self) -> list[T]:
        """Every item, grouped in the groups' order, registration order within a group."""
        self.load()
        if self.groups is None:
            return self.values()
        order = {group: i for i, group in enumerate(self.groups)}
        return sorted(self._items.values(), key=lambda item: order[group_of(item.id)])

    def select(
        self, names: list[str] | tuple[str, ...], *, within: list[T] | None = None, exclude: tuple[str, ...] = ()
    ) -> list[T]:
        """Resolve a user's selection (ids or group names) to items in order; unknown names are a
        :class:`UnknownSelection`. ``within`` narrows the pool (``--quick``): naming an item outside it
        is an error too, rather than a silently empty run."""
        every = [item for item in self.ordered() if item.id not in exclude]
        pool = every if within is None else within
        if not names:
            return pool
        wanted: set[str] = set()
        groups = self.groups or {}
        for name in names:
            if name in groups:
                wanted.update(item.id for item in every if group_of(item.id) == name)
            elif name in self._items and name not in exclude:
                wanted.add(name)
            else:
                listing = f"; {self.group_word}: {', '.join(groups)}" if groups else ""
                raise UnknownSelection(f"unknown {self.kind} {name!r}{listing}")
        chosen = [item for item in pool if item.id in wanted]
        left_out = sorted(wanted - {item.id for item in chosen})
        if left_out:
            raise UnknownSelection(f"not available in this mode: {', '.join(left_out)}")
        return chosen


def group_of(item_id: str) -> str:
    return item_id.split(".", 1)[0]


# --- checks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckSpec:
    """A check: ``fn(context)`` judges probed data into a Verdict. The doctor's checks register into
    :data:`envcheck.doctor.areas.CHECKS`; a lab spec makes more of the same kind."""

    id: str
    title: str
    fn: Callable[[Context], Verdict]
    doc: str

    @property
    def area(self) -> str:
        return group_of(self.id)


def first_paragraph(doc: str) -> str:
    """A docstring's first paragraph on one line: what listings and the README show."""
    return " ".join(doc.strip().split("\n\n")[0].split())
