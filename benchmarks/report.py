"""What a benchmark run writes: the machine it ran on, a Markdown table and a JSON file."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.apps import APPS_BY_NAME
from benchmarks.inprocess import paired_ratio
from benchmarks.pages import show_on_page
from benchmarks.redis_peers import markdown as redis_peers_markdown
from benchmarks.workloads import WORKLOADS

PACKAGES = (
    "tether",
    "anyio",
    "starlette",
    "fastapi",
    "pydantic",
    "litestar",
    "msgspec",
    "lilya",
    "channels",
    "django",
    "uvicorn",
    "websockets",
    "wsproto",
    "picows",
    "uvloop",
    "redis",
    "hiredis",
    "channels_redis",
    "python-socketio",
    "broadcaster",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(event_loop: str) -> dict[str, Any]:
    """Describe the machine, the interpreter, the event loop and the installed package versions."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "event_loop": event_loop,
        "packages": versions,
    }


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _title(app: str) -> str:
    spec = APPS_BY_NAME.get(app)
    return spec.title if spec else app


def _inprocess_section(inprocess: dict[str, Any]) -> list[str]:
    workloads = list(inprocess)
    apps = list(next(iter(inprocess.values()))) if inprocess else []
    unit = {
        name: "msg/s" if WORKLOADS[name].is_message_workload else "conn/s" for name in workloads
    }
    lines = [
        "## In-process (ASGI called directly, no network)",
        "",
        "Median per second over the rounds; in brackets the ratio to raw ASGI (1.00 = as fast"
        " as the floor), the median of the per-round ratios.",
        "",
        "| app | " + " | ".join(f"{WORKLOADS[w].title} ({unit[w]})" for w in workloads) + " |",
        "|---|" + "---:|" * len(workloads),
    ]
    notes = []
    for app in apps:
        cells = []
        for workload in workloads:
            entry = inprocess[workload][app]
            if entry["error"]:
                cells.append("failed")
                notes.append(f"- {app} / {workload}: {entry['error']}")
            else:
                cells.append(f"{_rate(entry['median'])} ({_ratio(entry['ratio_to_raw'])})")
            if entry.get("teardowns_ok") is False:
                notes.append(
                    f"- {app} / {workload}: the generator dependency was not torn down"
                    " when the connection ended"
                )
        lines.append(f"| {_title(app)} | " + " | ".join(cells) + " |")
    if notes:
        lines += ["", *notes]
    return lines


def _e2e_section(e2e: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    slices, duration = settings.get("e2e_slices"), settings.get("duration")
    how = (
        [
            f"All the apps' servers run at once; each app gets {duration:g} s per measurement,"
            f" cut into {slices} slices that alternate between the apps. A rate is the median"
            " over the rounds; a ratio is the median, over every slice of every round, of the"
            " app's rate over raw ASGI's in the same turn of slices.",
            "",
        ]
        if slices and duration
        else []
    )
    lines: list[str] = []
    for ws, rows in e2e.items():
        conns = sorted({int(c) for row in rows.values() for c in row["round_trips"]})
        header = ["app"]
        for c in conns:
            header += [f"round trips/s @{c}", f"ratio @{c}", f"p50 ms @{c}", f"p99 ms @{c}"]
        header += ["handshakes/s", "ratio"]
        client = next((row["client"] for row in rows.values() if row["client"]), "?")
        lines += [
            f"## End-to-end: uvicorn `--ws {ws}`, client {client}",
            "",
            *how,
            "| " + " | ".join(header) + " |",
            "|---|" + "---:|" * (len(header) - 1),
        ]
        notes = []
        for app, row in rows.items():
            if row["error"]:
                lines.append(
                    f"| {_title(app)} | " + " | ".join(["failed"] * (len(header) - 1)) + " |"
                )
                notes.append(f"- {app}: {row['error'][:300]}")
                continue
            cells = []
            for c in conns:
                trip = row["round_trips"].get(str(c), {})
                cells += [
                    _rate(trip.get("per_second")),
                    _ratio(trip.get("ratio_to_raw")),
                    "-" if trip.get("p50_ms") is None else f"{trip['p50_ms']:.2f}",
                    "-" if trip.get("p99_ms") is None else f"{trip['p99_ms']:.2f}",
                ]
            cells += [_rate(row["handshakes_per_second"]), _ratio(row["handshakes_ratio_to_raw"])]
            lines.append(f"| {_title(app)} | " + " | ".join(cells) + " |")
        lines += ["", *notes] if notes else [""]
    return lines


def _targets_section(results: dict[str, Any]) -> list[str]:
    inprocess = results.get("inprocess") or {}
    if "tether" in results.get("skipped", {}):
        return ["## tether's targets", "", f"tether skipped: {results['skipped']['tether']}", ""]
    checks = (
        ("text", "starlette", "per message, no dependencies: tether ≥ Starlette WebSocketEndpoint"),
        ("json", "starlette", "per JSON message: tether ≥ Starlette WebSocketEndpoint"),
        ("graph", "fastapi", "per connection with the graph: tether ≥ FastAPI Depends"),
        ("bare", "starlette", "per connection, no dependencies: tether vs Starlette endpoint"),
    )
    lines = ["## tether's targets (DESIGN.md, Performance rules)", ""]
    for workload, peer, text in checks:
        row = inprocess.get(workload, {})
        mine = (row.get("tether") or {}).get("samples")
        theirs = (row.get(peer) or {}).get("samples")
        ratio = paired_ratio(mine, theirs) if mine and theirs else None
        if ratio is not None:
            lines.append(f"- {text}: {ratio:.2f}x the peer")
    return [*lines, ""] if len(lines) > 2 else []


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _fanout_section(fanout: dict[str, Any]) -> list[str]:
    from benchmarks.fanout import TITLES

    members = fanout["members"]
    lines = [
        "## Fan-out (in-process)",
        "",
        f"One publish of a {fanout['message_bytes']}-byte JSON text to every member of a group,"
        " timed from the publish call until every member's ASGI `send` has the message"
        " (the last row: until `publish` returns). Each round opens a fresh batch of idle"
        " connections per row and member count, in turn, and times publishes to it; a cell"
        f" is the median of its {fanout.get('rounds', 1)} round(s)' medians.",
        "",
        "| members | " + " | ".join(f"{n:,}" for n in members) + " |",
        "|---|" + "---:|" * len(members),
    ]
    notes = []
    for row, cells in fanout["rows"].items():
        values = []
        for n in members:
            cell = cells.get(str(n), {})
            if "median_seconds" in cell:
                values.append(_duration(cell["median_seconds"]))
            elif "skipped" in cell:
                values.append("skipped")
                notes.append(f"- {row} @{n:,}: {cell['skipped']}")
            else:
                values.append("failed")
                notes.append(f"- {row} @{n:,}: {cell.get('error', '?')[:300]}")
        lines.append(f"| {TITLES.get(row, row)} | " + " | ".join(values) + " |")
    for name, reason in fanout.get("skipped", {}).items():
        notes.append(f"- {name} skipped: {reason}")
    notes += [f"- {text}" for text in fanout.get("no_groups", {}).values()]
    lines += ["", *notes, ""]
    redis = fanout.get("redis")
    if redis:
        lines += ["## Fan-out across two processes (RedisBroker, real redis-server)", ""]
        if "skipped" in redis:
            lines += [f"Skipped: {redis['skipped']}", ""]
        else:
            lines += [
                f"{redis['messages']:,} messages of {redis['message_bytes']} bytes from a"
                " publisher in the harness process to a subscriber process whose"
                " `OutboundQueue` hands each to `send`; median of"
                f" {redis['rounds']} round(s).",
                "",
                "| publisher tasks | published/s | delivered/s |",
                "|---:|---:|---:|",
            ]
            for tasks, row in redis["rows"].items():
                if "error" in row:
                    lines.append(f"| {tasks} | failed: {row['error'][:200]} | - |")
                    continue
                lines.append(
                    f"| {tasks} | {_rate(row['published_per_second'])}"
                    f" | {_rate(row['delivered_per_second'])} |"
                )
            lines.append("")
    peers = fanout.get("redis_peers")
    if peers and "rows" in peers:
        lines += [
            "## Across two processes: tether and its peers over one redis-server",
            "",
            f"{peers['messages']:,} messages of {peers['message_bytes']} bytes from the harness"
            " process to one subscriber process, each library used as its docs show"
            f" (see `benchmarks/redis_peers.py`); median of {peers['rounds']} round(s), the"
            " peers interleaved; in brackets tether's rate divided by the peer's.",
            "",
            redis_peers_markdown(peers),
        ]
    return lines


def _footprint_section(footprint: dict[str, Any]) -> list[str]:
    counts = footprint["counts"]
    rounds = ", ".join(f"{int(n):,}: {r}" for n, r in footprint["rounds"].items())
    header = []
    for n in counts:
        header += [f"bytes/conn @{n:,}", f"above raw @{n:,}"]
    lines = [
        "## Memory per idle connection (in-process, tracemalloc)",
        "",
        "Connections accepted and parked in `receive()`; growth of tracemalloc's traced"
        " total per connection (median over rounds; rounds per count: "
        f"{rounds}). `above raw` is the framework's share: the figure minus raw ASGI's.",
        "",
        "| app | " + " | ".join(header) + " |",
        "|---|" + "---:|" * len(header),
    ]
    notes = []
    for name, entry in footprint["rows"].items():
        cells = []
        for n in counts:
            cell = entry[str(n)]
            if "bytes" in cell:
                cells += [f"{cell['bytes']:,.0f}", f"{cell.get('share_above_raw', 0):,.0f}"]
            else:
                cells += ["failed", "-"]
                notes.append(f"- {name} @{n:,}: {cell['error'][:300]}")
        lines.append(f"| {entry['title']} | " + " | ".join(cells) + " |")
    return [*lines, "", *notes] if notes else [*lines, ""]


def _met(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "**not met**")


def issue_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each of the issue's targets with its measured value and whether it is met."""
    inprocess = results.get("inprocess") or {}
    targets: list[dict[str, Any]] = []

    def samples(workload: str, app: str) -> list[float] | None:
        return ((inprocess.get(workload) or {}).get(app) or {}).get("samples") or None

    variants = (("tether", "in Starlette's router"), ("tether_direct", "served directly"))
    raw_text = samples("text", "raw")
    for app, where in variants:
        text = samples("text", app)
        if text and raw_text:
            cost = 1 / paired_ratio(text, raw_text)
            targets.append(
                {
                    "target": f"text echo costs ≤ 1.5x raw ASGI per message ({where})",
                    "measured": f"{cost:.2f}x raw ASGI's time per message",
                    "met": cost <= 1.5,
                }
            )
    typed, json_peer = samples("typed", "tether"), samples("json", "starlette")
    if typed and json_peer:
        ratio = paired_ratio(typed, json_peer)
        targets.append(
            {
                "target": "typed msgspec messages ≥ 2x faster than Starlette's untyped JSON"
                " endpoint",
                "measured": f'{ratio:.2f}x Starlette\'s `encoding = "json"` msg/s',
                "met": ratio >= 2.0,
            }
        )
    for app, where in variants:
        graph = samples("graph", app)
        if not graph:
            continue
        peers = {
            peer: paired_ratio(graph, theirs)
            for peer, row in (inprocess.get("graph") or {}).items()
            if peer not in ("raw", "tether", "tether_direct") and (theirs := row.get("samples"))
        }
        bare = samples("bare", "starlette")
        within = paired_ratio(graph, bare) if bare else None
        slowest = min(peers.values()) if peers else None
        parts = [f"{ratio:.2f}x {peer}" for peer, ratio in peers.items()]
        if within is not None:
            parts.append(f"{within:.2f}x Starlette's bare endpoint (≥ 0.50 needed)")
        targets.append(
            {
                "target": "graph connect faster than every peer and within 2x of Starlette's"
                f" bare endpoint ({where})",
                "measured": "; ".join(parts),
                "met": None
                if slowest is None or within is None
                else slowest > 1.0 and within >= 0.5,
            }
        )
    e2e = results.get("e2e") or {}
    for app, where in variants:
        ratios = []
        for ws, rows in e2e.items():
            for conns, trip in ((rows.get(app) or {}).get("round_trips") or {}).items():
                if trip.get("ratio_to_raw") is not None:
                    ratios.append((f"{ws} @{conns}", trip["ratio_to_raw"]))
        if ratios:
            targets.append(
                {
                    "target": f"end-to-end round trips ≥ 0.95x raw ASGI ({where})",
                    "measured": ", ".join(f"{at}: {ratio:.2f}x" for at, ratio in ratios),
                    "met": all(ratio >= 0.95 for _, ratio in ratios),
                }
            )
    fanout = ((results.get("fanout") or {}).get("rows") or {}).get("tether", {}).get("1000", {})
    if "median_seconds" in fanout:
        enqueue = results["fanout"]["rows"].get("broker_enqueue", {}).get("1000", {})
        extra = (
            f" (the publish call alone: {_duration(enqueue['median_seconds'])})"
            if "median_seconds" in enqueue
            else ""
        )
        targets.append(
            {
                "target": "fan-out to 1,000 local members < 5 ms (publish → every member's send)",
                "measured": _duration(fanout["median_seconds"]) + extra,
                "met": fanout["median_seconds"] < 5e-3,
            }
        )
    footprint = (results.get("footprint") or {}).get("rows") or {}
    if "tether" in footprint:

        def shares(row: str) -> list[tuple[str, float]]:
            return [
                (f"@{int(n):,}", cell["share_above_raw"])
                for n, cell in footprint.get(row, {}).items()
                if isinstance(cell, dict) and "share_above_raw" in cell
            ]

        mounted = shares("tether")
        parts = [
            f"{label} {where}: {share:,.0f} B"
            for label, row in (
                ("in Starlette's router", "tether"),
                ("served directly", "tether_direct"),
                ("+1 dependency, in the router", "tether_dep"),
            )
            for where, share in shares(row)
        ]
        if mounted:
            targets.append(
                {
                    "target": "framework share of memory per idle connection < 4 KiB"
                    " (bare controller in Starlette's router, as served everywhere else here)",
                    "measured": "; ".join(parts),
                    "met": all(share < 4096 for _, share in mounted),
                }
            )
    return targets


def _issue_targets_section(results: dict[str, Any]) -> list[str]:
    targets = issue_targets(results)
    if not targets:
        return []
    lines = [
        "## The issue's targets (Benchmarks against the peers)",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    lines += [f"| {t['target']} | {t['measured']} | {_met(t['met'])} |" for t in targets]
    return [*lines, ""]


def render_markdown(results: dict[str, Any]) -> str:
    """Render a run's results as a Markdown report."""
    machine = results["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v)
    lines = [
        "# tether benchmarks",
        "",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable)"
        f", {machine['platform']}",
        f"- Python: {machine['python']}, event loop {machine['event_loop']}",
        f"- Packages: {packages}",
        f"- Settings: {json.dumps(results['settings'])}",
        "",
    ]
    for app, reason in results.get("skipped", {}).items():
        lines.append(f"- skipped {app}: {reason}")
    if results.get("skipped"):
        lines.append("")
    if results.get("inprocess"):
        lines += [*_inprocess_section(results["inprocess"]), ""]
    if results.get("e2e"):
        lines += _e2e_section(results["e2e"], results["settings"])
    if results.get("fanout"):
        lines += _fanout_section(results["fanout"])
    if results.get("footprint"):
        lines += _footprint_section(results["footprint"])
    lines += _targets_section(results)
    lines += _issue_targets_section(results)
    return "\n".join(lines).rstrip() + "\n"


def write_results(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write `latest.md` and `latest.json` into `out_dir`; return both paths.

    Into `benchmarks/results/`, this also rewrites the docs page that shows `latest.md`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown_path = out_dir / "latest.md"
    json_path = out_dir / "latest.json"
    markdown_path.write_text(render_markdown(results))
    json_path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    show_on_page(markdown_path)
    return markdown_path, json_path


def print_flush(text: str) -> None:
    """Print and flush at once, so progress shows while a long run goes on."""
    print(text, flush=True)
    sys.stdout.flush()
