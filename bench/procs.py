"""Process bookkeeping for the benchmark: CPU time and memory of a server's process tree
(from /proc), machine load, and stopping what the harness started, by PID only."""

import os
import signal
import subprocess
import time
from typing import Dict, List, Optional

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> Optional[List[str]]:
    """Fields of /proc/PID/stat from field 3 (state) on; None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return data[data.rindex(")") + 2:].split()


def start_time(pid: int) -> Optional[int]:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None  # field 22: starttime


def process_tree(root: int) -> Dict[int, int]:
    """{pid: starttime} for root and all its descendants."""
    children: Dict[int, List[int]] = {}
    starts: Dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))  # field 4: ppid
        starts[int(entry)] = int(fields[19])
    tree: Dict[int, int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in starts and pid not in tree:
            tree[pid] = starts[pid]
            todo.extend(children.get(pid, []))
    return tree


def leaves(root: int) -> List[int]:
    """Processes of root's tree that have no children of their own (the workers)."""
    tree = process_tree(root)
    parents = set()
    for pid in tree:
        fields = _stat_fields(pid)
        if fields:
            parents.add(int(fields[1]))
    return [pid for pid in tree if pid not in parents] or [root]


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of root and every descendant, all threads included.

    /proc/PID/stat's utime and stime already sum every thread of the process (live and
    exited); cutime and cstime add children that have exited and been reaped, so a worker
    that dies during the run is not lost.
    """
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields:
            ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / CLK_TCK


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(root: int) -> Dict[str, float]:
    """Memory of a server's tree in MiB: the worker (the largest leaf process) RSS, the RSS
    summed over every process (pages shared between a master and its forked workers count
    once per process) and the PSS summed over every process (shared pages split)."""
    tree = process_tree(root)
    worker_rss = max(_status_kib(pid, "VmRSS") for pid in leaves(root))
    return {
        "worker_rss_mib": worker_rss / 1024,
        "tree_rss_mib": sum(_status_kib(pid, "VmRSS") for pid in tree) / 1024,
        "tree_pss_mib": sum(_pss_kib(pid) for pid in tree) / 1024,
        "processes": len(tree),
    }


def system_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (from /proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    # guest time is already inside user/nice
    return (sum(values[:8]) - idle) / CLK_TCK


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def wait_idle(limit: float, threshold: float = 0.2) -> float:
    """Wait, at most limit seconds, until the machine is idle: under threshold cores busy
    over one second. Returns the seconds waited (other jobs on a shared machine add noise).
    """
    start = time.monotonic()
    while True:
        before = system_busy_seconds()
        time.sleep(1.0)
        waited = time.monotonic() - start
        if system_busy_seconds() - before < threshold or waited >= limit:
            return waited


def stop(proc: subprocess.Popen) -> None:
    """Stop a server we started, then any of its descendants still alive, by PID only."""
    tree = process_tree(proc.pid)
    for sig, grace in ((signal.SIGINT, 5.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        if proc.poll() is not None:
            break
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.wait(timeout=5)
    # Workers of a master that died first: those recorded PIDs (checked against their start
    # time, so a reused PID is never touched) get SIGKILL.
    for pid, started in tree.items():
        if pid != proc.pid and start_time(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
