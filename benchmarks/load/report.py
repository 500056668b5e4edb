"""The load test's result as Markdown: the runs, the leak check, the p95 search."""

from __future__ import annotations

from typing import Any

MIB = 1 << 20


def _runs(result: dict[str, Any]) -> list[str]:
    lines = [
        "| workers | clients | per worker | deliveries/s | p50 ms | p95 ms | p99 ms | received"
        " | bytes/conn | killed | leak check | load avg |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for workers, row in result["rows"].items():
        for rung in row["rungs"]:
            spread = " / ".join(str(n) for n in sorted(rung["spread"].values()))
            lines.append(
                f"| {workers} | {rung['clients']:,} | {spread} "
                f"| {rung['deliveries_per_second']:,.0f} "
                f"| {rung['p50_ms']:.1f} | {rung['p95_ms']:.1f} | {rung['p99_ms']:.1f} "
                f"| {rung['received']:,}/{rung['expected']:,} "
                f"| {rung['bytes_per_connection']:,.0f} | {rung['killed'] or '-'} "
                f"| {'ok' if rung['leaks']['ok'] else 'FAILED'} "
                f"| {rung.get('load_average', 0.0):.1f} |"
            )
    return lines


def _delivery(rung: dict[str, Any]) -> list[str]:
    lines = []
    for pid, seen in sorted(rung["by_worker"].items()):
        fate = "killed" if str(rung["killed"]) == pid else "survived"
        lines.append(
            f"  - worker {pid} ({fate}): {seen.get('connections', 0)} connections, "
            f"{seen.get('complete', 0)} received every broadcast in order, "
            f"{seen.get('dropped', 0)} dropped "
            f"({seen.get('dropped_after_in_order_prefix', 0)} after an in-order prefix)"
        )
    return lines


def _leaks(rung: dict[str, Any]) -> list[str]:
    leaks = rung["leaks"]
    before, peak, after = leaks["numsub"]
    lines = [f"  - PUBSUB NUMSUB: {before} before, {peak} with clients, {after} after"]
    for pid, worker in leaks["workers"].items():
        counts = worker["counts"]
        exact = ", ".join(
            f"{key} {counts[key][0]}→{counts[key][1]}→{counts[key][2]}"
            for key in counts
            if key not in ("rss", "objects")
        )
        rss, objects = counts["rss"], counts["objects"]
        lines.append(
            f"  - worker {pid}: {exact}; objects {objects[0]:,}→{objects[1]:,}→{objects[2]:,}"
            f" (not checked); RSS {rss[0] / MIB:.1f}→{rss[1] / MIB:.1f}→"
            f"{rss[2] / MIB:.1f} MiB (bound +{worker['rss_bound'] / MIB:.1f} MiB): "
            f"{'ok' if worker['ok'] else 'FAILED'}"
        )
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The runs as a table; per run the delivery per worker and the leak check
    (baseline→with clients→after); per worker count, the most clients under the p95 limit."""
    lines = [*_runs(result), ""]
    for workers, row in result["rows"].items():
        for rung in row["rungs"]:
            lines.append(f"- {workers} worker(s), {rung['clients']:,} clients:")
            lines += _delivery(rung) + _leaks(rung)
    lines.append("")
    limit = result.get("p95_limit_ms", 500.0)
    for workers, row in result["rows"].items():
        most = row["most_clients_p95_under_limit"]
        lines.append(
            f"- {workers} worker(s): most clients with p95 under {limit:g} ms: "
            f"{f'{most:,}' if most else 'none'}"
        )
    return "\n".join(lines) + "\n"
