"""Metric specs, the open registry of metric names, and name parsing.

Every metric declares what it consumes and its direction, so callers (the trainer's best snapshot, ``leangen eval``)
never guess from the name:

=================  ===========================================================  =========================  ========
consumes           input                                                        names                      better
=================  ===========================================================  =========================  ========
samples            images drawn from a generator vs real images                 ``fid<N>``, ``kid<N>``     lower
                                                                                ``pr<N>[nhood]``           higher
log_likelihood     log-probabilities of the (validation) images                 ``bpd``, ``bpd<N>``        lower
paired             translations of validation label maps vs their targets       ``psnr``                   higher
                                                                                ``l1``                     lower
                                                                                ``fid_pairs[<N>]``         lower
                                                                                ``kid_pairs[<N>]``         lower
teacher_student    a student and its teacher on the same inputs                 ``teacher_psnr[<N>]``      higher
=================  ===========================================================  =========================  ========

``<N>`` is a count with an optional ``k`` (x1000). Sampled names follow StyleGAN (``fid50k_full``, ``pr50k3_full``;
``_full``: against all real images). ``bpd<N>``, ``*_pairs<N>``, ``teacher_psnr<N>``: the first N images / pairs /
label maps of the data given (all of them without N); for generators ``teacher_psnr`` compares seeds 0..N-1
(``DEFAULT_TEACHER_SEEDS`` without N).

Open: ``register_metric(MetricSpec(...))`` adds a fixed name, ``register_metric_pattern(pattern, build, form)`` a
parametric one (``register_family`` is its old name). A spec of a new ``kind`` declares ``consumes`` and
``higher_is_better`` itself and brings
``compute(spec, model, dataset, ctx) -> Outcome``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from leangen.utils.registry import Registry, UnknownName

Consumes = Literal["samples", "log_likelihood", "paired", "teacher_student"]
CONSUMES: tuple[str, ...] = ("samples", "log_likelihood", "paired", "teacher_student")

# Model kinds (``PretrainedModel.kind``) each kind of input needs.
MODEL_KINDS: dict[str, tuple[str, ...]] = {
    "samples": ("generator",),
    "log_likelihood": ("likelihood",),
    "paired": ("translator",),
    "teacher_student": ("generator", "translator"),
}

# Built-in kinds: (consumes, higher_is_better). A spec of another kind must declare both.
KINDS: dict[str, tuple[Consumes, bool]] = {
    "fid": ("samples", False), "kid": ("samples", False), "pr": ("samples", True),
    "bpd": ("log_likelihood", False),
    "psnr": ("paired", True), "l1": ("paired", False), "fid_pairs": ("paired", False),
    "kid_pairs": ("paired", False),
    "teacher_psnr": ("teacher_student", True),
}

DEFAULT_TEACHER_SEEDS = 1000  # teacher_psnr on generators without a count: seeds 0..999


@dataclass
class Outcome:
    """What computing one metric gives: ``results`` {name: value}, ``protocol`` entries, ``warnings`` (strings)."""

    results: dict[str, float]
    protocol: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MetricSpec:
    """What a metric name means.

    Sampled metrics: ``num_gen`` generated images vs ``max_real`` real ones (``None``: all). Other metrics:
    ``num_images`` (``None``: every item of the data given). ``consumes`` / ``higher_is_better`` default to the
    built-in kind's; ``compute`` (for new kinds) is ``(spec, model, dataset, ctx) -> Outcome``.
    """

    name: str
    kind: str
    num_gen: int = 0
    max_real: int | None = None
    nhood: int = 3  # precision/recall: k of the k-NN radii
    num_subsets: int = 100  # KID
    max_subset_size: int = 1000  # KID
    consumes: Consumes | None = None  # type: ignore[assignment]
    higher_is_better: bool | None = None  # type: ignore[assignment]
    num_images: int | None = None
    compute: Callable[..., Outcome] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        default = KINDS.get(self.kind)
        if default is None and (self.consumes is None or self.higher_is_better is None or self.compute is None):
            raise ValueError(f"metric {self.name!r}: kind {self.kind!r} is not built in; declare consumes=, "
                             "higher_is_better= and compute=")
        if self.consumes is None:
            object.__setattr__(self, "consumes", default[0])  # type: ignore[index]
        if self.higher_is_better is None:
            object.__setattr__(self, "higher_is_better", default[1])  # type: ignore[index]
        if self.consumes not in CONSUMES:
            raise ValueError(f"metric {self.name!r}: consumes must be one of {', '.join(CONSUMES)}, "
                             f"got {self.consumes!r}")

    @property
    def needs_real_features(self) -> bool:
        return self.kind in ("kid", "pr", "kid_pairs")

    @property
    def uses_inception(self) -> bool:
        return self.kind in ("fid", "kid", "pr", "fid_pairs", "kid_pairs")

    def num_real(self, available: int) -> int:
        """Real images a sampled metric uses out of ``available``."""
        return available if self.max_real is None else min(self.max_real, available)

    def count(self, available: int) -> int:
        """Items a non-sampled metric uses out of ``available`` (the first ``num_images``, or all)."""
        return available if self.num_images is None else min(self.num_images, available)

    @property
    def result_names(self) -> tuple[str, ...]:
        """Keys of the record's ``results``."""
        return (f"{self.name}_precision", f"{self.name}_recall") if self.kind == "pr" else (self.name,)


@dataclass(frozen=True)
class _Family:
    pattern: re.Pattern[str]
    build: Callable[[str, "re.Match[str]"], MetricSpec]
    form: str  # for error messages


class _MetricTable(Registry):
    """Registered metrics by name; ``in`` and ``[]`` also accept any name a pattern parses (``fid200``,
    ``bpd500``). Iterating lists the fixed names only."""

    def __contains__(self, name: object) -> bool:
        if dict.__contains__(self, name):
            return True
        try:
            parse_metric(str(name))
        except ValueError:
            return False
        return True

    def __missing__(self, name: str) -> MetricSpec:
        return parse_metric(name)


METRICS: _MetricTable = _MetricTable("metric", replace=True)
_FAMILIES: list[_Family] = []


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add (or replace) a named metric."""
    return METRICS.register(spec.name, spec)


def register_metric_pattern(pattern: str, build: Callable[[str, "re.Match[str]"], MetricSpec], form: str) -> None:
    """Add a parametric metric name: ``build(name, match)`` makes the spec of any name ``pattern`` fully matches.
    ``form`` (e.g. ``"bpd[<N>]"``) is shown when a name is unknown."""
    _FAMILIES.append(_Family(re.compile(pattern), build, form))


register_family = register_metric_pattern  # the old name ("family" means a model family everywhere else)


def _count(m: re.Match[str], name: str, minimum: int) -> int | None:
    if m["num"] is None:
        return None
    num = int(m["num"]) * (1000 if m["k"] else 1)
    if num < minimum:
        raise ValueError(f"metric {name!r}: needs at least {minimum} images")
    return num


def _build_sampled(name: str, m: re.Match[str]) -> MetricSpec:
    if m["nhood"] is not None and (m["kind"] != "pr" or m["k"] is None):
        raise ValueError(f"unknown metric {name!r}: only pr takes a neighbourhood size, after a 'k' (pr10k3)")
    num = _count(m, name, 2)
    assert num is not None
    kind = m["kind"]
    nhood = int(m["nhood"]) if m["nhood"] else 3
    if kind == "pr" and nhood < 1:
        raise ValueError(f"metric {name!r}: neighbourhood size must be >= 1")
    max_real = {"fid": None, "kid": 1_000_000, "pr": 200_000}[kind] if m["full"] else num
    return MetricSpec(name, kind, num, max_real, nhood=nhood)


def _build_counted(kind: str, minimum: int) -> Callable[[str, "re.Match[str]"], MetricSpec]:
    return lambda name, m: MetricSpec(name, kind, num_images=_count(m, name, minimum))


_N = r"(?:(?P<num>\d+)(?P<k>k)?)"
register_metric_pattern(r"(?P<kind>fid|kid|pr)(?P<num>\d+)(?P<k>k)?(?P<nhood>\d+)?(?P<full>_full)?", _build_sampled,
                "fid<N>/kid<N>/pr<N> with an optional 'k' (x1000) and '_full' (all real images)")
register_metric_pattern(rf"bpd{_N}?", _build_counted("bpd", 1), "bpd[<N>]")
register_metric_pattern(rf"fid_pairs{_N}?", _build_counted("fid_pairs", 2), "fid_pairs[<N>]")
register_metric_pattern(rf"kid_pairs{_N}?", _build_counted("kid_pairs", 2), "kid_pairs[<N>]")
register_metric_pattern(rf"teacher_psnr{_N}?", _build_counted("teacher_psnr", 1), "teacher_psnr[<N>]")
# StyleGAN's names (metric_main.py), the small ones for CPU-sized runs, and the fixed paired ones.
for _spec in (MetricSpec("fid50k_full", "fid", 50_000, None), MetricSpec("kid50k_full", "kid", 50_000, 1_000_000),
              MetricSpec("pr50k3_full", "pr", 50_000, 200_000, nhood=3), MetricSpec("fid2k", "fid", 2_000, 2_000),
              MetricSpec("kid2k", "kid", 2_000, 2_000), MetricSpec("pr2k", "pr", 2_000, 2_000, nhood=3),
              MetricSpec("psnr", "psnr"), MetricSpec("l1", "l1")):
    register_metric(_spec)


def parse_metric(name: str) -> MetricSpec:
    """``MetricSpec`` for a registered name or one a family parses: ``fid200``, ``kid10k``, ``pr5k3_full``,
    ``bpd``, ``bpd500``, ``fid_pairs200``, ``teacher_psnr64``. Raises a one-line ``ValueError`` otherwise."""
    name = str(name).strip()
    if dict.__contains__(METRICS, name):
        return dict.__getitem__(METRICS, name)
    for fam in _FAMILIES:
        m = fam.pattern.fullmatch(name)
        if m is not None:
            return fam.build(name, m)
    forms = "; ".join(f.form for f in _FAMILIES)
    raise UnknownName(f"unknown metric {name!r}: expected one of {', '.join(dict.keys(METRICS))}, or {forms} "
                     "(e.g. fid200, kid2k, pr10k3_full, bpd500, fid_pairs200)")


def metric_info(name: str) -> MetricSpec:
    """The spec of metric ``name``: ``.consumes``, ``.higher_is_better``, sizes. ``ValueError`` for unknown names."""
    return parse_metric(name)


def list_metrics() -> list[str]:
    """Registered metric names (parametric forms such as ``fid<N>`` and ``bpd<N>`` are accepted too)."""
    return list(dict.keys(METRICS))


__all__ = ["Consumes", "CONSUMES", "MODEL_KINDS", "KINDS", "DEFAULT_TEACHER_SEEDS", "Outcome", "MetricSpec",
           "METRICS", "register_metric", "register_metric_pattern", "register_family", "parse_metric", "metric_info",
           "list_metrics"]
