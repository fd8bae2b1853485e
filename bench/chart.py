"""The PNG chart of a comparison run (matplotlib, Agg backend): for each scenario, the
headline figure (req/s or MB/s) and the server CPU µs per request of every server; for the
memory scenario, worker RSS and the whole tree's PSS."""

from typing import List

from scenarios import Scenario
from targets import Medians

TIDEGATE_COLOUR = "#1f6fb4"
PEER_COLOUR = "#9aa5b1"
REFERENCE_COLOUR = "#d98c3f"  # nginx and the floor: not WSGI servers


def _colour(name: str) -> str:
    if name.startswith("tidegate"):
        return TIDEGATE_COLOUR
    return REFERENCE_COLOUR if name in ("nginx", "floor") else PEER_COLOUR


def _bars(ax, names: List[str], values: List[float], title: str, digits: int) -> None:
    ys = list(range(len(names)))[::-1]
    ax.barh(ys, values, color=[_colour(n) for n in names])
    ax.set_yticks(ys)
    ax.set_yticklabels(names, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    top = max(values) if values else 1
    for y, v in zip(ys, values):
        ax.text(v + top * 0.01, y, f"{v:,.{digits}f}", va="center", fontsize=7)
    ax.set_xlim(0, top * 1.22 if top > 0 else 1)


def draw(scenarios: List[Scenario], med: Medians, path: str, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [sc for sc in scenarios if med.get(sc.key)]
    if not rows:
        raise RuntimeError("no scenario has results")
    fig, axes = plt.subplots(len(rows), 2, figsize=(13, 2.1 * len(rows) + 0.8), squeeze=False)
    for (left, right), sc in zip(axes, rows):
        figures = med[sc.key]
        names = [n for n in sc.servers if n in figures]
        if sc.kind == "memory":
            _bars(left, names, [figures[n]["worker_rss_mib"] for n in names],
                  f"{sc.title}: worker RSS, MiB (lower is better)", 1)
            _bars(right, names, [figures[n]["tree_pss_mib"] for n in names],
                  "whole process tree PSS, MiB (lower is better)", 1)
            continue
        unit = "req/s" if sc.metric == "rps" else "MB/s"
        _bars(left, names, [figures[n][sc.metric] for n in names],
              f"{sc.title}: {unit} (higher is better)", 0 if sc.metric == "rps" else 1)
        _bars(right, names, [figures[n]["cpu_us_per_req"] for n in names],
              "server CPU µs per request (lower is better)", 1)
    fig.suptitle("tidegate against its peers (make bench): medians\n" + subtitle, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(path, dpi=80)
    plt.close(fig)

