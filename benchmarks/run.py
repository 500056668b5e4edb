"""The `python -m benchmarks` command: parse flags, run the chosen harnesses, write the results."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.apps import APPS, APPS_BY_NAME, BASELINE, AppSpec, load_app
from benchmarks.e2e import run_e2e, summarize_e2e
from benchmarks.fanout import MEMBER_COUNTS, run_fanout, run_redis
from benchmarks.footprint import CONNECTION_COUNTS, run_footprint
from benchmarks.inprocess import run_inprocess, summarize
from benchmarks.redis_peers import run_redis_peers
from benchmarks.report import machine_info, print_flush, render_markdown, write_results
from benchmarks.workloads import WORKLOADS

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of `python -m benchmarks`."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="tether against raw ASGI and its peers: in-process and under uvicorn.",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny workload, for smoke tests")
    parser.add_argument(
        "--only", choices=("all", "inprocess", "e2e", "fanout", "footprint"), default="all"
    )
    parser.add_argument("--apps", type=_csv, default=None, help="comma list; raw always runs")
    parser.add_argument("--workloads", type=_csv, default=None, help="in-process workloads")
    parser.add_argument("--rounds", type=int, default=None, help="in-process rounds (11)")
    parser.add_argument("--messages", type=int, default=None, help="messages a sample (10000)")
    parser.add_argument("--connections", type=int, default=None, help="connects a sample (1000)")
    parser.add_argument(
        "--sample-seconds", type=float, default=None, help="cap on one sample's length (0.25)"
    )
    parser.add_argument("--e2e-rounds", type=int, default=None, help="end-to-end rounds (3)")
    parser.add_argument("--duration", type=float, default=None, help="seconds a measurement (0.8)")
    parser.add_argument(
        "--e2e-slices", type=int, default=None, help="slices each app's duration is cut into (40)"
    )
    parser.add_argument("--ws", type=_csv, default=None, help="uvicorn --ws (websockets,wsproto)")
    parser.add_argument("--e2e-connections", type=_csv, default=None, help="default 1,50")
    parser.add_argument("--client", choices=("auto", "picows", "websockets"), default="auto")
    parser.add_argument(
        "--fanout-members", type=_csv, default=None, help="group sizes (1,100,1000,10000)"
    )
    parser.add_argument(
        "--fanout-seconds", type=float, default=None, help="publishing time a fan-out cell (0.3)"
    )
    parser.add_argument(
        "--fanout-rounds", type=int, default=None, help="fan-out rounds, interleaved (3)"
    )
    parser.add_argument(
        "--redis-messages", type=int, default=None, help="messages through Redis (5000; 0 skips)"
    )
    parser.add_argument("--redis-rounds", type=int, default=None, help="Redis rounds (3)")
    parser.add_argument(
        "--footprint-connections", type=_csv, default=None, help="idle connections (1000,10000)"
    )
    parser.add_argument(
        "--footprint-rounds",
        type=_csv,
        default=None,
        help="rounds per connection count, the last one repeated (3,1)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where latest.md/json go")
    return parser


def resolve_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Fill in every unset flag from the defaults of a full or a `--quick` run."""
    quick = args.quick

    def pick(value: Any, full: Any, small: Any) -> Any:
        return value if value is not None else (small if quick else full)

    return {
        "quick": quick,
        "rounds": pick(args.rounds, 11, 1),
        "messages": pick(args.messages, 10_000, 300),
        "connections": pick(args.connections, 1_000, 50),
        "sample_seconds": pick(args.sample_seconds, 0.25, 0.05),
        "workloads": args.workloads or list(WORKLOADS),
        "e2e_rounds": pick(args.e2e_rounds, 3, 1),
        "duration": pick(args.duration, 0.8, 0.2),
        "e2e_slices": pick(args.e2e_slices, 40, 2),
        "ws": args.ws or (["websockets"] if quick else ["websockets", "wsproto"]),
        "e2e_connections": [int(c) for c in (args.e2e_connections or ["1", "50"])],
        "handshake_concurrency": 8,
        "client": args.client,
        "fanout_members": [
            int(n)
            for n in (args.fanout_members or (["1", "10", "100"] if quick else MEMBER_COUNTS))
        ],
        "fanout_seconds": pick(args.fanout_seconds, 0.3, 0.05),
        "fanout_rounds": pick(args.fanout_rounds, 3, 1),
        "redis_messages": pick(args.redis_messages, 5_000, 500),
        "redis_rounds": pick(args.redis_rounds, 3, 1),
        "redis_publishers": [1, 8, 64],
        "footprint_connections": [
            int(n)
            for n in (args.footprint_connections or (["100"] if quick else CONNECTION_COUNTS))
        ],
        "footprint_rounds": [
            int(n) for n in (args.footprint_rounds or (["1"] if quick else ["3", "1"]))
        ],
    }


def select_apps(names: Sequence[str] | None) -> list[AppSpec]:
    """Return the app specs asked for, in table order, always with the raw ASGI baseline."""
    if not names:
        return list(APPS)
    unknown = [name for name in names if name not in APPS_BY_NAME]
    if unknown:
        raise SystemExit(f"unknown app(s) {unknown}; known: {', '.join(APPS_BY_NAME)}")
    wanted = {BASELINE, *names}
    return [spec for spec in APPS if spec.name in wanted]


def _event_loop_runner() -> tuple[Any, str]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run, "asyncio"
    return uvloop.run, f"uvloop {uvloop.__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark as the flags say; print the report and write latest.md/latest.json."""
    args = build_parser().parse_args(argv)
    settings = resolve_settings(args)
    unknown = [w for w in settings["workloads"] if w not in WORKLOADS]
    if unknown:
        raise SystemExit(f"unknown workload(s) {unknown}; known: {', '.join(WORKLOADS)}")
    runner, loop_name = _event_loop_runner()
    results: dict[str, Any] = {"machine": machine_info(loop_name), "settings": settings}
    machine = results["machine"]
    print_flush(f"machine: {machine['cpu']}, {machine['cores']} cores; {machine['python']}")
    print_flush("packages: " + ", ".join(f"{k} {v}" for k, v in machine["packages"].items() if v))

    started = time.perf_counter()
    loaded: list[tuple[AppSpec, Any]] = []
    skipped: dict[str, str] = {}
    for spec in select_apps(args.apps):
        app, reason = load_app(spec)
        if reason is not None:
            skipped[spec.name] = reason
            print_flush(f"skipping {spec.name}: {reason}")
        else:
            loaded.append((spec, app))
    results["skipped"] = skipped

    if args.only in ("all", "inprocess"):
        cells = runner(
            run_inprocess(
                loaded,
                [WORKLOADS[name] for name in settings["workloads"]],
                rounds=settings["rounds"],
                messages=settings["messages"],
                connections=settings["connections"],
                sample_seconds=settings["sample_seconds"],
                log=print_flush,
            )
        )
        results["inprocess"] = summarize(cells)

    if args.only in ("all", "e2e"):
        raw_results = run_e2e(
            [spec for spec, _ in loaded],
            ws_impls=settings["ws"],
            rounds=settings["e2e_rounds"],
            duration=settings["duration"],
            slices=settings["e2e_slices"],
            connections=settings["e2e_connections"],
            handshake_concurrency=settings["handshake_concurrency"],
            client=settings["client"],
            log=print_flush,
        )
        results["e2e"] = summarize_e2e(raw_results)

    if args.only in ("all", "fanout"):
        fanout = runner(
            run_fanout(
                settings["fanout_members"],
                peers=[spec.name for spec, _ in loaded],
                budget=settings["fanout_seconds"],
                rounds=settings["fanout_rounds"],
                log=print_flush,
            )
        )
        if settings["redis_messages"] > 0:
            fanout["redis"] = run_redis(
                settings["redis_messages"],
                publishers=settings["redis_publishers"],
                rounds=settings["redis_rounds"],
                runner=runner,
                log=print_flush,
            )
            fanout["redis_peers"] = run_redis_peers(
                settings["redis_messages"],
                publishers=settings["redis_publishers"],
                rounds=settings["redis_rounds"],
                runner=runner,
                log=print_flush,
            )
        else:
            fanout["redis"] = {"skipped": "--redis-messages 0"}
            print_flush("fan-out: Redis skipped: --redis-messages 0")
        results["fanout"] = fanout

    if args.only in ("all", "footprint"):
        results["footprint"] = runner(
            run_footprint(
                [(spec.name, app) for spec, app in loaded],
                settings["footprint_connections"],
                rounds=settings["footprint_rounds"],
                log=print_flush,
            )
        )

    results["elapsed_seconds"] = round(time.perf_counter() - started, 1)
    markdown_path, json_path = write_results(results, args.out)
    print_flush("")
    print_flush(render_markdown(results))
    print_flush(f"wrote {markdown_path} and {json_path} in {results['elapsed_seconds']}s")
    return 0
