"""The speed targets of issue 6, checked against the medians of a run.

Every verdict is computed here from the measured medians: tidegate's value over the
reference's, compared with the factor the target asks for. A reference that was not
measured (a peer that failed to install or start) gives "not measured", never a verdict.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from servers import BJOERN, GRANIANS

# medians[scenario][server][field]
Medians = Dict[str, Dict[str, Dict[str, float]]]


@dataclass
class Target:
    text: str
    scenario: str
    field: str  # the compared figure: rps, mbps, cpu_us_per_req, p99_ms, worker_rss_mib
    reference: str  # a server name, "granian-best", or "const:VALUE"
    op: str  # ">=", ">" or "<=" between tidegate/reference and factor
    factor: float
    tidegate: str = "tidegate"


TARGETS = [
    Target("hello CPU/req ≤ 0.9× bjoern (-c50)", "hello-c50", "cpu_us_per_req", BJOERN, "<=", 0.9),
    Target("hello CPU/req ≤ 0.9× bjoern (-c256)", "hello-c256", "cpu_us_per_req", BJOERN, "<=", 0.9),
    Target("hello req/s ≥ bjoern (-c50)", "hello-c50", "rps", BJOERN, ">=", 1.0),
    Target("hello req/s ≥ bjoern (-c256)", "hello-c256", "rps", BJOERN, ">=", 1.0),
    Target("hello req/s ≥ 1.6× Granian best (-c50)", "hello-c50", "rps", "granian-best", ">=", 1.6),
    Target("hello req/s ≥ 1.6× Granian best (-c256)", "hello-c256", "rps", "granian-best", ">=",
           1.6),
    Target("hello p99 ≤ bjoern (-c50)", "hello-c50", "p99_ms", BJOERN, "<=", 1.0),
    Target("hello p99 ≤ bjoern (-c256)", "hello-c256", "p99_ms", BJOERN, "<=", 1.0),
    Target("JSON req/s ≥ bjoern", "json", "rps", BJOERN, ">=", 1.0),
    Target("POST echo req/s ≥ 1.5× Granian best", "post", "rps", "granian-best", ">=", 1.5),
    Target("1 MiB stream MB/s ≥ 1.3× Granian best", "stream", "mbps", "granian-best", ">=", 1.3),
    Target("file_wrapper MB/s ≥ 0.8× nginx", "file", "mbps", "nginx", ">=", 0.8),
    Target("I/O-bound req/s ≥ 95% of 800", "io", "rps", "const:800", ">=", 0.95, "tidegate-t8"),
    Target("I/O-bound req/s > gunicorn gthread", "io", "rps", "gunicorn-gthread", ">", 1.0,
           "tidegate-t8"),
    Target("Connection: close req/s ≥ bjoern", "close", "rps", BJOERN, ">=", 1.0),
    Target("idle worker RSS ≤ Granian worker (smallest)", "memory", "worker_rss_mib",
           "granian-best", "<=", 1.0),
]


@dataclass
class Verdict:
    target: Target
    value: Optional[float]
    reference_name: str
    reference_value: Optional[float]
    ratio: Optional[float]
    status: str  # "met", "not met", "not measured: ..."


def _reference(target: Target, figures: Dict[str, Dict[str, float]]) -> Tuple[str, Optional[float]]:
    if target.reference.startswith("const:"):
        return "ideal", float(target.reference.split(":", 1)[1])
    if target.reference == "granian-best":
        measured = [(name, figures[name][target.field]) for name in GRANIANS if name in figures]
        if not measured:
            return "Granian", None
        # The best Granian: the one that makes the target hardest to meet.
        pick = min if target.op == "<=" else max
        return pick(measured, key=lambda item: item[1])
    figure = figures.get(target.reference)
    return target.reference, figure[target.field] if figure else None


def evaluate(medians: Medians) -> List[Verdict]:
    verdicts = []
    for target in TARGETS:
        figures = medians.get(target.scenario, {})
        mine = figures.get(target.tidegate)
        value = mine[target.field] if mine else None
        ref_name, ref_value = _reference(target, figures)
        ratio = value / ref_value if value is not None and ref_value else None
        if not figures:
            status = "not measured: scenario not run (or no server succeeded)"
        elif value is None:
            status = f"not measured: {target.tidegate} has no result"
        elif ref_value is None:
            status = f"not measured: no result for {ref_name}"
        elif ratio != ratio:  # NaN (a p99 wrk did not report)
            status = "not measured: no figure"
        else:
            ok = {">=": ratio >= target.factor, ">": ratio > target.factor,
                  "<=": ratio <= target.factor}[target.op]
            status = "met" if ok else "not met"
        verdicts.append(Verdict(target, value, ref_name, ref_value, ratio, status))
    return verdicts
