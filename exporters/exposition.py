"""`/metrics` for a large fleet: per-VM families pre-rendered, re-rendered only where changed.

Building every family fresh on each scrape costs the whole fleet (tens of seconds for 10,000
VMs); inventory changes rarely. So each VM's samples are rendered once per `Section` of
`exporters.metrics` and kept with the section's key; a scrape compares keys, re-renders only
the sections whose key changed, and joins the cached lines family by family under one
HELP/TYPE header each. A VM whose `VmState.generation` has not moved since the last scrape
only has its `live` keys read (liveness and each kind's last success: heartbeats and polls
move them on every VM between two scrapes, while most polls find the same facts).

Sample lines are the same in the Prometheus text format 0.0.4 and in OpenMetrics 1.0; only
the headers differ. Escaping and number formatting are
prometheus_client's (`generate_latest`, `floatToGoString`), byte for byte; the tests compare
against it. The collector-wide families (errors, durations, build, writer, alerting, process)
stay with prometheus_client's own encoder on a small registry, appended to the page.

Public surface: `MetricsPage` (the endpoint's body and content type) and `VmExposition`
(the per-VM part, for benchmarks and tests).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

from prometheus_client import utils
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from collector.state import FleetState, VmState
from exporters.metrics import SECTIONS, VM_FAMILIES, Section, VmFamily

_UNSET: Final = object()
#: prometheus_client's own float formatting (untyped there).
floatToGoString: Final = cast(Callable[[float], str], utils.floatToGoString)
_OPENMETRICS: Final = "application/openmetrics-text"
#: The values of every info and stateset sample, formatted once.
_NUMBERS: Final = {v: floatToGoString(v) for v in (0.0, 1.0)}
#: Go's exponent suffix by the position of the decimal point (7 to 16 integer digits).
_EXPONENTS: Final = {dot: f"e+{dot - 1:02d}" for dot in range(7, 17)}


def format_value(value: float) -> str:
    """`floatToGoString`, byte for byte; quicker for 1e6 < value < 1e16 (timestamps, bytes).

    There Python's shortest repr is positional with 7 to 16 integer digits, which Go writes
    with an exponent: the same digit shuffle, without the special-value checks around it.
    """
    if 1e6 < value < 1e16:
        text = repr(float(value))
        dot = text.find(".")
        mantissa = (text[0] + "." + text[1:dot] + text[dot + 1 :]).rstrip("0.")
        return mantissa + _EXPONENTS[dot]
    return _NUMBERS.get(value) or floatToGoString(value)


def escape_label_value(value: str) -> str:
    """As prometheus_client escapes a label value (text and OpenMetrics alike)."""
    if "\\" in value or "\n" in value or '"' in value:  # rare: three tests, no calls
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _headers(family: VmFamily, *, openmetrics: bool) -> bytes:
    """HELP and TYPE of one family: a text-format counter is named with `_total`."""
    doc = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    name = family.name
    if openmetrics:
        doc = doc.replace('"', r"\"")
    elif family.type == "counter":
        name += "_total"
    return f"# HELP {name} {doc}\n# TYPE {name} {family.type}\n".encode()


class _Line:
    """Renders one family's sample lines: labels in name order, as prometheus_client does."""

    __slots__ = ("order", "single", "template")

    def __init__(self, family: VmFamily) -> None:
        sample = family.name + ("_total" if family.type == "counter" else "")
        #: Positions of the label values in label-name order.
        self.order = sorted(range(len(family.labels)), key=lambda i: family.labels[i])
        labels = ",".join(f'{family.labels[i]}="%s"' for i in self.order)
        self.template = f"{sample}{{{labels}}} %s\n" if labels else f"{sample} %s\n"
        self.single = self.order == [0]

    def value_template(self, fixed: Sequence[str]) -> str:
        """This family's line with the label values after `domain` filled in: `%s` for
        the escaped domain, then `%s` for the value."""
        values = ["%s", *(escape_label_value(v).replace("%", "%%") for v in fixed)]
        return self.template % (*(values[i] for i in self.order), "%s")

    def __call__(self, values: Sequence[str], value: float) -> str:
        number = format_value(value)
        if self.single:  # most families: `domain` only
            return self.template % (escape_label_value(values[0]), number)
        escaped = [escape_label_value(values[i]) for i in self.order]
        return self.template % (*escaped, number)


class _Vm:
    """One VM's cache: per section its key and rendered lines; per family the VM's lines;
    the state object and generation its keys were read from."""

    __slots__ = ("cells", "domain", "generation", "keys", "lines", "state")

    def __init__(self, domain: str, empty: list[tuple[bytes, ...]], families: int) -> None:
        self.domain = escape_label_value(domain)
        self.keys: list[Any] = [_UNSET] * len(empty)
        self.cells = empty.copy()
        self.lines: list[bytes] = [b""] * families
        self.state: VmState | None = None
        self.generation = -1


class VmExposition:
    """The per-VM families of a FleetState as exposition bytes, re-rendered where changed.

    `render` may run in a worker thread while the event loop mutates state: it snapshots
    the VM list, and each section renders from the key it read once (a half-applied poll is
    picked up whole by the next scrape). Overlapping renders are serialized by a lock.
    """

    def __init__(
        self,
        fleet: FleetState,
        sections: Sequence[Section[Any]] = SECTIONS,
        families: Sequence[VmFamily] = VM_FAMILIES,
    ) -> None:
        self.fleet = fleet
        self.sections = tuple(sections)
        self.families = tuple(families)
        index = {family: i for i, family in enumerate(self.families)}
        #: Per section, the page index of each of its families.
        self._slots = [tuple(index[f] for f in s.families) for s in self.sections]
        self._keys = [s.key for s in self.sections]
        #: (section, key) of the sections read on every scrape (`Section.live`).
        self._live = [(i, s.key) for i, s in enumerate(self.sections) if s.live]
        self._positions = [{f: p for p, f in enumerate(s.families)} for s in self.sections]
        #: Per family, the (section, position) cells that hold its lines, in section order.
        self._sources: list[list[tuple[int, int]]] = [[] for _ in self.families]
        for s, slots in enumerate(self._slots):
            for position, f in enumerate(slots):
                self._sources[f].append((s, position))
        self._lines = {family: _Line(family) for family in self.families}
        #: Per section, the line template of a `value_section` (else None).
        self._value_templates = [
            None
            if s.value_labels is None
            else self._lines[s.families[0]].value_template(s.value_labels)
            for s in self.sections
        ]
        self._empty = [(b"",) * len(slots) for slots in self._slots]
        self._headers = {
            fmt: [_headers(f, openmetrics=fmt) for f in self.families] for fmt in (False, True)
        }
        self._vms: dict[str, _Vm] = {}
        self._lock = threading.Lock()
        #: Sections re-rendered by the last `render` (a cost figure for tests and benchmarks).
        self.rendered = 0

    def render(self, *, openmetrics: bool, trailer: bytes = b"") -> bytes:
        """Every per-VM family, then `trailer` (the rest of the page), in one buffer."""
        return b"".join(self.parts(openmetrics=openmetrics, trailer=trailer))

    def parts(self, *, openmetrics: bool, trailer: bytes = b"") -> list[bytes]:
        """`render`'s bytes as the pieces it joins: headers and one VM's lines of a family.

        A gzipped scrape compresses them block by block and never builds the 50 MB page.
        """
        with self._lock:
            vms = list(self.fleet.vms.items())
            cached = self._vms
            current: dict[str, _Vm] = {}
            entries: list[_Vm] = []
            rendered = 0
            nfamilies = len(self.families)
            live = self._live
            for name, vm in vms:
                entry = cached.get(name)
                if entry is None:
                    entry = _Vm(name, self._empty, nfamilies)
                # Read before the keys: a change made while they are read moves it again.
                generation = vm.generation
                if entry.state is vm and entry.generation == generation:
                    # Nothing but live keys moved (heartbeats, polls that found the same facts).
                    keys = entry.keys
                    changed = []
                    for s, read in live:
                        key = read(vm)
                        if keys[s] is not key and keys[s] != key:
                            changed.append(s)
                        keys[s] = key
                    if changed:
                        self._render(entry, name, changed)
                        rendered += len(changed)
                else:
                    keys = [key(vm) for key in self._keys]
                    old, entry.keys = entry.keys, keys  # an equal new key frees the old objects
                    entry.state, entry.generation = vm, generation
                    if keys != old:  # compared in C: identical objects short-circuit
                        changed = [
                            s for s, key in enumerate(keys) if old[s] is not key and old[s] != key
                        ]
                        self._render(entry, name, changed)
                        rendered += len(changed)
                current[name] = entry
                entries.append(entry)
            self._vms = current  # VMs no longer in the fleet are dropped
            self.rendered = rendered
            parts: list[bytes] = []
            for f, header in enumerate(self._headers[openmetrics]):
                parts.append(header)
                parts.extend([e.lines[f] for e in entries])
            parts.append(trailer)
            return parts

    def _render(self, entry: _Vm, domain: str, changed: list[int]) -> None:
        """Re-render the changed sections of one VM, then its lines of the families they feed."""
        cells, lines, templates = entry.cells, self._lines, self._value_templates
        touched: list[int] = []
        last: Any = None  # a poll's kinds share one timestamp: format it once
        number = ""
        for s in changed:
            template = templates[s]
            if template is not None:  # one line from the key: no `samples` generator
                value = entry.keys[s]
                if value is None:
                    cells[s] = (b"",)
                else:
                    if value != last:
                        last, number = value, format_value(value)
                    cells[s] = ((template % (entry.domain, number)).encode(),)
                touched.append(self._slots[s][0])
                continue
            position = self._positions[s]
            out: list[list[str]] = [[] for _ in position]
            for family, values, value in self.sections[s].samples(domain, entry.keys[s]):
                out[position[family]].append(lines[family](values, value))
            cells[s] = tuple(["".join(text).encode() for text in out])
            touched.extend(self._slots[s])
        for f in set(touched) if len(changed) > 1 else touched:
            sources = self._sources[f]
            if len(sources) == 1:
                s, p = sources[0]
                entry.lines[f] = cells[s][p]
            else:
                entry.lines[f] = b"".join([cells[s][p] for s, p in sources])


class MetricsPage:
    """The `/metrics` body: pre-rendered per-VM families, then `registry` (no per-VM family
    in it) through prometheus_client's encoder, as one exposition (one `# EOF` in
    OpenMetrics, at the end, where the encoder puts it)."""

    def __init__(self, fleet: FleetState, registry: Collector) -> None:
        self.vms = VmExposition(fleet)
        self.registry = registry

    def render(self, accept: str) -> tuple[bytes, str]:
        """Body and content type for an Accept header (OpenMetrics when asked, as before)."""
        parts, content_type = self.parts(accept)
        return b"".join(parts), content_type

    def parts(self, accept: str) -> tuple[list[bytes], str]:
        """`render`'s body as the pieces it joins (`VmExposition.parts`), and content type."""
        encoder, content_type = choose_encoder(accept)
        openmetrics = content_type.startswith(_OPENMETRICS)
        trailer = encoder(self.registry)
        return self.vms.parts(openmetrics=openmetrics, trailer=trailer), content_type
