"""The markdown report of a comparison run: the issue-6 targets, then one table of medians
and ratios per scenario, then every round's figures."""

import statistics
from typing import Dict, List, Optional

from scenarios import Scenario
from servers import BJOERN, GRANIANS, SERVERS
from targets import Medians, Verdict

IDEAL_IO_RPS = 800.0  # 8 threads x 1 / 0.01 s
NUMBERS = ("rps", "mbps", "cpu_us_per_req", "p99_ms", "server_cores", "wrk_cores",
           "other_cores", "socket_errors", "non2xx", "worker_rss_mib", "tree_rss_mib",
           "tree_pss_mib", "processes")


def medians(runs: List[dict]) -> Medians:
    """medians[scenario][server][field] over the rounds that succeeded."""
    out: Medians = {}
    groups: Dict[tuple, List[dict]] = {}
    for run in runs:
        if run["ok"]:
            groups.setdefault((run["scenario"], run["server"]), []).append(run["data"])
    for (scenario, server), datas in groups.items():
        fields = {k: statistics.median(d[k] for d in datas) for k in NUMBERS if k in datas[0]}
        fields["rounds_ok"] = len(datas)
        out.setdefault(scenario, {})[server] = fields
    return out


def _num(value: Optional[float], digits: int = 0) -> str:
    if value is None or value != value:
        return "–"
    return f"{value:,.{digits}f}"


def _ratio(value: Optional[float], ref: Optional[float]) -> str:
    if value is None or not ref or value != value or ref != ref:
        return "–"
    return f"{value / ref:.2f}×"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def granian_best(figures: Dict[str, Dict[str, float]], field: str, lower_better: bool = False):
    measured = [(n, figures[n][field]) for n in GRANIANS if n in figures]
    if not measured:
        return None, None
    return (min if lower_better else max)(measured, key=lambda item: item[1])


_OPS = {">=": "≥", ">": ">", "<=": "≤"}


def targets_table(verdicts: List[Verdict]) -> List[str]:
    lines = [
        "| target | tidegate | reference | ratio | needed | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for v in verdicts:
        t = v.target
        digits = 1 if t.field in ("cpu_us_per_req", "worker_rss_mib") else (
            2 if t.field == "p99_ms" else 0)
        verdict = f"**{v.status}**" if v.status in ("met", "not met") else v.status
        lines.append(
            f"| {t.text} | {_num(v.value, digits)} | {_num(v.reference_value, digits)} "
            f"({v.reference_name}) | {'–' if v.ratio is None else f'{v.ratio:.2f}×'} "
            f"| {_OPS[t.op]} {t.factor:g}× | {verdict} |")
    return lines


def scenario_table(sc: Scenario, figures: Dict[str, Dict[str, float]],
                   unavailable: Dict[str, str], failures: Dict[str, List[str]],
                   notes: Dict[str, List[str]], rounds: int) -> List[str]:
    if sc.kind == "memory":
        head = ["server", "worker RSS MiB", "tree RSS MiB", "tree PSS MiB", "processes",
                "worker RSS vs Granian (smallest)"]
        _, gr = granian_best(figures, "worker_rss_mib", lower_better=True)
    else:
        unit = "req/s" if sc.metric == "rps" else "MB/s"
        head = ["server", unit, "CPU µs/req"] + (["p99 ms"] if sc.latency else [])
        if sc.key == "io":
            head += ["of ideal 800", "vs gunicorn gthread"]
        else:
            if sc.key == "file":
                head.append(f"{unit} vs nginx")
            head += [f"{unit} vs bjoern", "CPU vs bjoern", f"{unit} vs Granian best"]
        head += ["server cores", "wrk cores", "other cores"]
    head.append("notes")
    lines = ["| " + " | ".join(head) + " |",
             "|---|" + "---:|" * (len(head) - 2) + "---|"]
    bj = figures.get(BJOERN)
    for name in sc.servers:
        label = SERVERS[name].label
        blank = " | ".join(["–"] * (len(head) - 2))
        if name in unavailable:
            lines.append(f"| {label} | {blank} | not available: {_md(unavailable[name])} |")
            continue
        m = figures.get(name)
        if m is None:
            lines.append(f"| {label} | {blank} | failed: {_md('; '.join(failures.get(name, [])))} |")
            continue
        note = list(dict.fromkeys(notes.get(name, [])))
        if m["rounds_ok"] < rounds:
            note.append(f"{int(m['rounds_ok'])}/{rounds} rounds ok: "
                        + "; ".join(failures.get(name, [])))
        if sc.kind == "memory":
            cells = [_num(m["worker_rss_mib"], 1), _num(m["tree_rss_mib"], 1),
                     _num(m["tree_pss_mib"], 1), _num(m["processes"]),
                     _ratio(m["worker_rss_mib"], gr)]
        else:
            metric = m[sc.metric]
            cells = [_num(metric, 0 if sc.metric == "rps" else 1), _num(m["cpu_us_per_req"], 1)]
            if sc.latency:
                cells.append(_num(m["p99_ms"], 2))
            if sc.key == "io":
                gthread = figures.get("gunicorn-gthread")
                cells += [f"{metric / IDEAL_IO_RPS:.0%}",
                          _ratio(metric, gthread and gthread["rps"])]
            else:
                if sc.key == "file":
                    nginx = figures.get("nginx")
                    cells.append(_ratio(metric, nginx and nginx["mbps"]))
                _, gr = granian_best(figures, sc.metric)
                cells += [_ratio(metric, bj and bj[sc.metric]),
                          _ratio(m["cpu_us_per_req"], bj and bj["cpu_us_per_req"]),
                          _ratio(metric, gr)]
            cells += [_num(m["server_cores"], 2), _num(m["wrk_cores"], 2),
                      _num(m["other_cores"], 2)]
            if m["socket_errors"] or m["non2xx"]:
                note.append(f"median socket errors {m['socket_errors']:.0f}, "
                            f"non-2xx {m['non2xx']:.0f}")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_md('; '.join(note))} |")
    return lines


def per_round(sc: Scenario, runs: List[dict]) -> List[str]:
    lines = []
    for name in sc.servers:
        mine = [r for r in runs if r["scenario"] == sc.key and r["server"] == name]
        if not mine:
            continue
        parts = []
        for r in mine:
            if not r["ok"]:
                parts.append("failed")
            elif sc.kind == "memory":
                parts.append(f"{r['data']['worker_rss_mib']:.1f}")
            else:
                d = r["data"]
                value = f"{d[sc.metric]:,.0f}" if sc.metric == "rps" else f"{d[sc.metric]:,.1f}"
                parts.append(f"{value} / {d['cpu_us_per_req']:.1f}")
        lines.append(f"- {name}: " + "; ".join(parts))
    return lines


def render(scenarios: List[Scenario], runs: List[dict], unavailable: Dict[str, Dict[str, str]],
           verdicts: List[Verdict], header: List[str], rounds: int) -> str:
    med = medians(runs)
    failures: Dict[str, Dict[str, List[str]]] = {}
    notes: Dict[str, Dict[str, List[str]]] = {}
    for r in runs:
        if not r["ok"]:
            failures.setdefault(r["scenario"], {}).setdefault(r["server"], []).append(
                f"round {r['round']}: {r['reason']}")
        for n in r.get("notes", []):
            notes.setdefault(r["scenario"], {}).setdefault(r["server"], []).append(n)
    lines = ["# tidegate against its peers (`make bench`)", ""] + header
    lines += ["", "## Targets of issue 6", "",
              "tidegate's median over the reference's median; \"Granian best\" is whichever "
              "Granian configuration did best in that scenario. Computed by bench/targets.py.",
              ""] + targets_table(verdicts)
    for i, sc in enumerate(scenarios, 1):
        lines += ["", f"## {i}. {sc.title}", ""]
        lines += scenario_table(sc, med.get(sc.key, {}), unavailable.get(sc.key, {}),
                                failures.get(sc.key, {}), notes.get(sc.key, {}), rounds)
    lines += ["", "## Every round", "",
              "req/s (MB/s for the stream and file scenarios) / CPU µs per request, "
              "round 1; round 2; ...; worker RSS MiB for memory.", ""]
    for sc in scenarios:
        rows = per_round(sc, runs)
        if rows:
            lines += [f"{sc.key}:", ""] + rows + [""]
    return "\n".join(lines).rstrip() + "\n"
