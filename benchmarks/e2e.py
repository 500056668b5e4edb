"""End-to-end benchmark: each app under uvicorn, a load client in another process, loopback only.

The servers and the client each get a core of their own when the machine has two.
In a round all the apps' servers run at once, and the client alternates between them
in short slices, so that the machine's slow spells land on every app alike. Every
server is started on a free port, waited for with a deadline, and always terminated
(then killed) when its round ends, also on errors and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.apps import BASELINE, AppSpec
from benchmarks.e2e_client import client_timeout

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_START_TIMEOUT = 30.0
SERVER_STOP_TIMEOUT = 5.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pick_cores() -> tuple[int | None, int | None]:
    """Return (server core, client core), or (None, None) with fewer than two cores to use."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return cores[0], cores[1]


def _wait_listening(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"server exited with {process.returncode}: {tail}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server not listening on port {port} after {SERVER_START_TIMEOUT}s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(SERVER_STOP_TIMEOUT)


@contextlib.contextmanager
def uvicorn_servers(
    specs: Sequence[AppSpec], ws: str, cpu: int | None
) -> Iterator[tuple[dict[str, int], dict[str, str]]]:
    """Serve every app under uvicorn at once, each on a free loopback port; always stop them.

    Yields `({app: port}, {app: error})`: an app whose server did not come up is
    reported, and the others are measured all the same.
    """
    with contextlib.ExitStack() as stack:
        started: dict[str, tuple[int, subprocess.Popen[bytes], Path]] = {}
        for spec in specs:
            port = free_port()
            command = [sys.executable, "-m", "benchmarks.e2e_server", "--target", spec.target]
            command += ["--port", str(port), "--ws", ws]
            if cpu is not None:
                command += ["--cpu", str(cpu)]
            log = stack.enter_context(
                tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log")
            )
            process = subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            stack.callback(_stop, process)
            started[spec.name] = (port, process, Path(log.name))
        ports: dict[str, int] = {}
        errors: dict[str, str] = {}
        for name, (port, process, log_path) in started.items():
            try:
                _wait_listening(port, process, log_path)
                ports[name] = port
            except RuntimeError as exc:
                errors[name] = f"RuntimeError: {exc}"
        yield ports, errors


def run_client(
    ports: dict[str, int],
    *,
    duration: float,
    slices: int,
    connections: Sequence[int],
    handshake_concurrency: int,
    client: str,
    cpu: int | None,
) -> dict[str, Any]:
    """Run the load client in its own process against the servers; return its JSON result."""
    targets = ",".join(f"{name}={port}" for name, port in ports.items())
    command = [sys.executable, "-m", "benchmarks.e2e_client", "--targets", targets]
    command += ["--duration", str(duration), "--slices", str(slices)]
    command += ["--connections", ",".join(map(str, connections))]
    command += ["--handshake-concurrency", str(handshake_concurrency), "--client", client]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    timeout = client_timeout(len(ports), len(connections), duration) + 30
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"client failed ({done.returncode}): {done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_e2e(
    apps: Sequence[AppSpec],
    *,
    ws_impls: Sequence[str],
    rounds: int,
    duration: float,
    slices: int,
    connections: Sequence[int],
    handshake_concurrency: int,
    client: str = "auto",
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Measure every app under every uvicorn websocket implementation.

    In a round, all the apps' servers run at once (idle but for the one being
    measured) and the client alternates between them in `slices` per app.
    Returns `{ws_impl: {app: [result per round, or {"error": ...}]}}`.
    """
    server_cpu, client_cpu = pick_cores()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        ws: {spec.name: [] for spec in apps} for ws in ws_impls
    }
    for round_index in range(rounds):
        started = time.perf_counter()
        for ws in ws_impls:
            shift = round_index % len(apps)
            ordered = [*apps[shift:], *apps[:shift]]
            with uvicorn_servers(ordered, ws, server_cpu) as (ports, errors):
                try:
                    measured = run_client(
                        ports,
                        duration=duration,
                        slices=slices,
                        connections=connections,
                        handshake_concurrency=handshake_concurrency,
                        client=client,
                        cpu=client_cpu,
                    )
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                    measured = {"apps": {name: {"error": failure} for name in ports}}
            for spec in apps:
                name = spec.name
                if name in errors:
                    result = {"error": errors[name]}
                else:
                    result = {"client": measured.get("client"), **measured["apps"][name]}
                if "error" in result:
                    log(f"  e2e {name} ({ws}) failed: {result['error'][:300]}")
                results[ws][name].append(result)
        log(f"e2e: round {round_index + 1}/{rounds} in {time.perf_counter() - started:.1f}s")
    return results


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize_e2e(results: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Reduce per-round results to medians and ratios to raw ASGI, per ws implementation."""
    summary: dict[str, Any] = {}
    for ws, by_app in results.items():
        rows: dict[str, dict[str, Any]] = {}
        for app_name, runs in by_app.items():
            good = [run for run in runs if "error" not in run]
            errors = [run["error"] for run in runs if "error" in run]
            row: dict[str, Any] = {"error": errors[0] if errors and not good else None}
            row["client"] = good[0]["client"] if good else None
            by_conns: dict[int, list[dict[str, Any]]] = {}
            for run in good:
                for trip in run["round_trips"]:
                    by_conns.setdefault(trip["connections"], []).append(trip)
            row["round_trips"] = {
                str(conns): {
                    "per_second": _median([t["per_second"] for t in trips]),
                    "p50_ms": _median([t["p50_ms"] for t in trips if t["p50_ms"] is not None]),
                    "p99_ms": _median([t["p99_ms"] for t in trips if t["p99_ms"] is not None]),
                    "errors": sum(t["errors"] for t in trips),
                }
                for conns, trips in sorted(by_conns.items())
            }
            shakes = [run["handshakes"] for run in good if run.get("handshakes")]
            row["handshakes_per_second"] = _median([h["per_second"] for h in shakes])
            row["handshake_errors"] = sum(h["errors"] for h in shakes)
            row["runs"] = runs
            rows[app_name] = row
        _add_ratios(rows)
        summary[ws] = rows
    return summary


def _slice_ratios(pairs: list[tuple[dict[str, Any] | None, dict[str, Any] | None]]) -> list[float]:
    """Rate over the baseline's for every slice both measured in the same slice round."""
    ratios = []
    for cell, base in pairs:
        if cell and base:
            # strict=False: an app whose connections all failed stopped early.
            rates = zip(cell["slice_rates"], base["slice_rates"], strict=False)
            ratios += [rate / base_rate for rate, base_rate in rates if base_rate]
    return ratios


def _trip(run: dict[str, Any], conns: str) -> dict[str, Any] | None:
    if "error" in run:
        return None
    return next((t for t in run["round_trips"] if str(t["connections"]) == conns), None)


def _add_ratios(rows: dict[str, dict[str, Any]]) -> None:
    """Ratio to raw ASGI: the median, over every slice of every round, of rate / raw's rate.

    The slices of one slice round ran back to back, so each ratio compares the
    apps under the same conditions of the machine.
    """
    base = rows.get(BASELINE)
    for row in rows.values():
        pairs = list(zip(row["runs"], base["runs"], strict=True)) if base else []
        for conns, trip in row["round_trips"].items():
            ratios = _slice_ratios([(_trip(run, conns), _trip(b, conns)) for run, b in pairs])
            trip["ratio_to_raw"] = _median(ratios)
        shakes = [(run.get("handshakes"), b.get("handshakes")) for run, b in pairs]
        row["handshakes_ratio_to_raw"] = _median(_slice_ratios(shakes))
