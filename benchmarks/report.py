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


def _e2e_section(e2e: dict[str, Any]) -> list[str]:
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
        lines += _e2e_section(results["e2e"])
    lines += _targets_section(results)
    return "\n".join(lines).rstrip() + "\n"


def write_results(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write `latest.md` and `latest.json` into `out_dir`; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown_path = out_dir / "latest.md"
    json_path = out_dir / "latest.json"
    markdown_path.write_text(render_markdown(results))
    json_path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    return markdown_path, json_path


def print_flush(text: str) -> None:
    """Print and flush at once, so progress shows while a long run goes on."""
    print(text, flush=True)
    sys.stdout.flush()
