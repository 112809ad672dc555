"""The report: the Markdown table with the issue's targets, the chart, and the copy into bench/README.md."""

from __future__ import annotations

import os
import statistics
from typing import Any, Callable, Dict, List, Optional, Tuple

from .common import LABELS, ROOT, MiB


def metric(run: Dict[str, Any], peer: str, path: str) -> Optional[float]:
    """A number from one run's results, ``None`` where the workload failed or did not run."""
    value: Any = run.get(peer, {})
    for part in path.split("/"):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def rows(p: Dict[str, Any]) -> List[Tuple[str, str, str, Optional[str]]]:
    """(label, metric path, number format, which way is better) for the results table."""
    one, ten = str(p["sizes"][0]), str(p["sizes"][-1])
    n = p["connections"]
    return [
        ("1 serial small calls, calls/s", "serial/calls_per_s", "{:,.0f}", "high"),
        ("1 serial small calls, p50 ms", "serial/p50_ms", "{:.3f}", "low"),
        ("1 serial small calls, p99 ms", "serial/p99_ms", "{:.3f}", "low"),
        (f"2 {p['parallel_clients']} parallel clients, total calls/s", "parallel/calls_per_s", "{:,.0f}", "high"),
        (f"3 {int(one) // MiB} MiB round trip, median ms", f"big/{one}/median_ms", "{:.1f}", "low"),
        (f"3 {int(ten) // MiB} MiB round trip, median ms", f"big/{ten}/median_ms", "{:.0f}", "low"),
        (f"4 {p['push']:,} pushed messages, msgs/s", "push/msgs_per_s", "{:,.0f}", "high"),
        (f"5 {n:,} connections: served", "connections/ok", "{:,.0f}", "high"),
        (f"5 {n:,} connections: listen-queue overflows", "connections/listen_overflows", "{:,.0f}", "low"),
        (f"5 {n:,} connections: seconds until all served", "connections/seconds", "{:.1f}", "low"),
        ("5 server RSS MiB, idle", "connections/rss_idle_mib", "{:.1f}", None),
        (f"5 server RSS MiB, {n:,} open", "connections/rss_open_mib", "{:.1f}", "low"),
        (f"5 server threads, idle / {n:,} open", "connections/threads_open", "{:,.0f}", "low"),
        (f"6 broadcast to {p['bcast_clients']} clients, deliveries/s", "broadcast/deliveries_per_s", "{:,.0f}",
         "high"),
        ("7 small call under load, p50 ms", "load/p50_ms", "{:.2f}", "low"),
        ("7 small call under load, p99 ms", "load/p99_ms", "{:.2f}", "low"),
        (f"7 the {p['loaders']} loaders pulled, MiB/s", "load/loader_mib_per_s", "{:,.0f}", "high"),
        (f"8 {p['bytes_size'] // MiB} MiB of bytes round trip (binary), median ms", "bytes/median_ms", "{:.0f}",
         "low"),
        (f"9 {p['transfer_mib']} MiB pushed in 1 MiB chunks, MiB/s", "download/mib_per_s", "{:,.0f}", "high"),
        ("9 server RSS growth while pushing, MiB", "download/rss_growth_mib", "{:.1f}", None),
        (f"10 {p['transfer_mib']} MiB uploaded in 1 MiB chunks, MiB/s", "upload/mib_per_s", "{:,.0f}", "high"),
        ("10 server RSS growth while uploading, MiB", "upload/rss_growth_mib", "{:.1f}", None),
        (f"11 {p['js_mib']:,} MiB from Node to disk, MiB/s", "js-upload/mib_per_s", "{:,.0f}", "high"),
        ("11 server RSS growth, Node upload, MiB", "js-upload/rss_growth_mib", "{:.1f}", None),
        ("12 1920x1080 RGBA frames drawn in Chromium, frames/s", "frames/fps", "{:.1f}", "high"),
        ("12 putImageData per frame, ms", "frames/draw_ms", "{:.0f}", None),
    ]


def targets(p: Dict[str, Any]) -> List[Tuple[str, Callable[[Dict[str, Any]], Optional[float]], str, float, str]]:
    """The issue's targets: (what, per-run value, comparison, threshold, format)."""
    n = p["connections"]

    def ratio(path: str, peer: str, invert: bool = False) -> Callable[[Dict[str, Any]], Optional[float]]:
        def value(run: Dict[str, Any]) -> Optional[float]:
            a, b = metric(run, "igor", path), metric(run, peer, path)
            if a is None or b is None or (b if not invert else a) == 0:
                return None
            return b / a if invert else a / b
        value.workload = path.split("/")[0]  # type: ignore[attr-defined]  # a target of a workload not run is left out
        return value

    def own(path: str) -> Callable[[Dict[str, Any]], Optional[float]]:
        def value(run: Dict[str, Any]) -> Optional[float]:
            return metric(run, "igor", path)
        value.workload = path.split("/")[0]  # type: ignore[attr-defined]
        return value

    ten = str(p["sizes"][-1])
    return [
        ("serial calls/s vs websocket-server echo", ratio("serial/calls_per_s", "websocket-server"), ">=", 0.35, "x"),
        ("serial calls/s vs python-socketio", ratio("serial/calls_per_s", "socketio"), ">=", 10, "x"),
        ("serial p99 / own p50", lambda run: (metric(run, "igor", "serial/p99_ms") or 0)
         / (metric(run, "igor", "serial/p50_ms") or float("nan")), "<", 3, "x"),
        ("8 parallel clients vs websocket-server echo", ratio("parallel/calls_per_s", "websocket-server"), ">=", 0.6,
         "x"),
        (f"{int(ten) // MiB} MiB round trip time / websockets' time", ratio(f"big/{ten}/median_ms", "websockets"),
         "<=", 1.2, "x"),
        ("pushed msgs/s vs websocket-server", ratio("push/msgs_per_s", "websocket-server"), ">=", 0.9, "x"),
        (f"{n:,} connections all served", own("connections/ok"), ">=", n, "n"),
        (f"{n:,} connections: listen-queue overflows", own("connections/listen_overflows"), "<=", 0, "n"),
        (f"{n:,} connections: server RSS MiB", own("connections/rss_open_mib"), "<", 64, "MiB"),
        (f"{n:,} connections: threads per idle connection", own("connections/threads_per_conn"), "<=", 1, "t"),
        ("broadcast deliveries/s", own("broadcast/deliveries_per_s"), ">=", 250_000, "n"),
        ("broadcast vs python-socketio", ratio("broadcast/deliveries_per_s", "socketio"), ">=", 6, "x"),
        ("p50 under streaming load / python-socketio's", ratio("load/p50_ms", "socketio"), "<=", 1, "x"),
        (f"{p['bytes_size'] // MiB} MiB bytes round trip / websockets' binary echo (issue 19)",
         ratio("bytes/median_ms", "websockets"), "<=", 1.1, "x"),
        (f"{p['transfer_mib']} MiB pushed, MiB/s vs websockets (issue 19)", ratio("download/mib_per_s", "websockets"),
         ">=", 0.8, "x"),
        (f"{p['transfer_mib']} MiB pushed: server RSS growth MiB (issue 19)", own("download/rss_growth_mib"), "<", 64,
         "MiB"),
        (f"{p['transfer_mib']} MiB uploaded, MiB/s vs websockets (issue 19)", ratio("upload/mib_per_s", "websockets"),
         ">=", 0.8, "x"),
        (f"{p['transfer_mib']} MiB uploaded: server RSS growth MiB (issue 19)", own("upload/rss_growth_mib"), "<", 64,
         "MiB"),
        (f"{p['js_mib']:,} MiB from Node to disk: server RSS growth MiB (issue 19)", own("js-upload/rss_growth_mib"),
         "<", 64, "MiB"),
    ]


def fmt_range(values: List[Optional[float]], form: str) -> str:
    got = [v for v in values if v is not None and v == v]
    if not got:
        return "failed" if values else "–"
    low, high = min(got), max(got)
    text = form.format(low) if form.format(low) == form.format(high) else f"{form.format(low)} – {form.format(high)}"
    missing = len(values) - len(got)
    return text + (f" ({missing} failed)" if missing else "")


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}x" if value < 10 else f"{value:.1f}x"


def report(data: Dict[str, Any]) -> str:
    """The Markdown the harness prints and writes: setup, results, ratios, targets."""
    runs, p, m, peers = data["runs"], data["params"], data["machine"], data["peers"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    lines = [
        f"{m['date']}; {m['cpu']}, {m['cores']} cores, {m['system']}; Python {m['python']}; {versions}; "
        f"Igor at {m['igor_commit'] or 'unknown commit'}. {len(runs)} run(s) in {data['seconds']:.0f} s; 1-minute "
        f"load average {data['load'][0]:.1f} before, {data['load'][1]:.1f} after (the machine may be shared); "
        + (f"CPU time taken by the host (steal) in each run: "
           f"{', '.join(f'{v:.1f}%' for v in data['steal_percent'])}; " if data.get("steal_percent") else "")
        + "each cell is the range (min – max) over the runs.",
        "",
        "Client for every latency figure: websocket-client (`create_connection(..., skip_utf8_validation=True)`), "
        "one loop for all peers (Socket.IO's Engine.IO v4 / Socket.IO v5 framing by hand on it; Igor's protocol "
        "version 2, `igor.v2`, as its own clients speak it). Pushed and "
        "broadcast messages are read in bulk from the same sockets. Parallel clients and stream loaders: "
        "separate worker processes, one connection each. Counts: "
        f"{p['serial']:,} serial calls (at most {p['serial_s']:g} s); {p['parallel_clients']} clients for "
        f"{p['parallel_s']:g} s; {', '.join(f'{n} x {s // MiB} MiB' for s, n in zip(p['sizes'], p['reps']))} "
        f"(at most {p['big_s']:g} s each after the first); {p['push']:,} pushes; {p['connections']:,} connections "
        f"from {p['conn_processes']} processes (each thread one connection, {p['conn_timeout']:g} s timeout); "
        f"{p['bcast_clients']} clients x {p['bcast']:,} broadcasts; {p['loaders']} loaders pulling a "
        f"{round(data['blob_bytes'] / 1024)} KiB JSON reply for {p['load_s']:g} s. Igor runs with "
        "`max_clients: 1100` (its default, 64, would refuse most of the connections).",
        "",
    ]
    binary_rows = [w for w in ("bytes", "download", "upload", "js-upload", "frames")
                   if any(w in r.get(peer, {}) for r in runs for peer in peers)]
    if binary_rows:
        lines += [
            "Binary rows (8 to 12, issue 19), against `websockets` (and python-socketio for frames) only: Igor "
            "speaks protocol 3 (`igor.v3`, binary messages) on the same websocket-client connection, the peer "
            "plain binary frames; Igor's uploads are paced by the server's `read` acknowledgements. Counts: "
            f"{p['bytes_reps']} x {p['bytes_size'] // MiB} MiB echoed (after a warm-up); {p['transfer_mib']} "
            f"MiB each way in 1 MiB chunks; {p['js_mib']:,} MiB from Node (Igor's JS client, or `ws`) into a "
            f"handler writing a file; frames pushed to headless Chromium for {p['frames_s']:g} s, each answered "
            "by the page on arrival before the next is sent. RSS growth: the server's peak `VmRSS` during the "
            "transfer minus just before it.",
            "",
        ]
    lines += [
        "| workload | " + " | ".join(LABELS[peer] for peer in peers) + " | "
        + " | ".join(f"Igor vs {LABELS[peer]}" for peer in peers if peer != "igor") + " |",
        "| --- " * (2 * len(peers)) + "|",
    ]
    for label, path, form, better in rows(p):
        workload = path.split("/")[0]
        if not any(workload in r.get(peer, {}) for r in runs for peer in peers):
            continue  # not run (--workloads)
        cells = []
        for peer in peers:
            tried = [r for r in runs if workload in r.get(peer, {})]
            if path == "connections/threads_open":
                idle = fmt_range([metric(r, peer, "connections/threads_idle") for r in tried], form)
                cells.append(idle + " / " + fmt_range([metric(r, peer, path) for r in tried], form))
            else:
                cells.append(fmt_range([metric(r, peer, path) for r in tried], form))
        for peer in peers:
            if peer == "igor":
                continue
            ratios = []
            for r in runs:
                a, b = metric(r, "igor", path), metric(r, peer, path)
                if better and a is not None and b is not None and a > 0 and b > 0:
                    ratios.append(a / b if better == "high" else b / a)
            cells.append(fmt_range(ratios, "{:.2f}x") if ratios else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Igor vs a peer: above 1 means Igor is better (more per second, or less time, memory, threads).", "",
              "| target (issue 11 unless named) | wanted | measured, median of runs (range) | |",
              "| --- | --- | --- | --- |"]
    for what, value, op, threshold, unit in targets(p):
        values = [value(r) for r in runs]
        got = [v for v in values if v is not None and v == v]
        workload = getattr(value, "workload", "serial")
        if not got and not any(workload in r.get("igor", {}) for r in runs):
            continue  # its workload was not run (--workloads)
        wanted = f"{op} {threshold:g}x" if unit == "x" else f"{op} {threshold:,g}"
        if not got:
            lines.append(f"| {what} | {wanted} | failed | not met |")
            continue
        median = statistics.median(got)
        met = {">=": median >= threshold, "<=": median <= threshold, "<": median < threshold}[op]
        if unit == "x":
            shown = f"{fmt_ratio(median)} ({fmt_range(got, '{:.2f}x')})"
        else:
            form = "{:,.1f}" if unit in ("MiB", "t") else "{:,.0f}"
            shown = f"{form.format(median)} ({fmt_range(got, form)})"
        lines.append(f"| {what} | {wanted} | {shown} | {'**met**' if met else 'not met'} |")
    return "\n".join(lines) + "\n"


def chart(data: Dict[str, Any], path: str) -> None:
    """One panel per headline figure, a bar per peer (the median of the runs, whiskers min – max)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p, runs, peers = data["params"], data["runs"], data["peers"]
    panels = [("serial calls/s", "serial/calls_per_s", "higher"),
              (f"{p['parallel_clients']} parallel clients, calls/s", "parallel/calls_per_s", "higher"),
              (f"{p['sizes'][-1] // MiB} MiB round trip, ms", f"big/{p['sizes'][-1]}/median_ms", "lower"),
              (f"{p['push']:,} pushes, msgs/s", "push/msgs_per_s", "higher"),
              (f"RSS MiB, {p['connections']:,} connections", "connections/rss_open_mib", "lower"),
              (f"threads, {p['connections']:,} connections", "connections/threads_open", "lower"),
              (f"broadcast to {p['bcast_clients']}, deliveries/s", "broadcast/deliveries_per_s", "higher"),
              ("call p50 under load, ms", "load/p50_ms", "lower"),
              (f"{p['bytes_size'] // MiB} MiB bytes round trip, ms", "bytes/median_ms", "lower"),
              (f"{p['transfer_mib']} MiB pushed, MiB/s", "download/mib_per_s", "higher"),
              (f"{p['transfer_mib']} MiB uploaded, MiB/s", "upload/mib_per_s", "higher"),
              (f"{p['js_mib']:,} MiB Node to disk, MiB/s", "js-upload/mib_per_s", "higher"),
              ("1080p RGBA frames in Chromium, fps", "frames/fps", "higher")]
    # A panel per workload that ran (the binary ones, 8 to 12, only where asked for).
    panels = [panel for panel in panels if any(panel[1].split("/")[0] in r.get(peer, {}) for r in runs
                                               for peer in peers)]
    colours = {"websocket-server": "#9e9e9e", "websockets": "#64b5f6", "socketio": "#ffb74d", "igor": "#2e7d32"}
    columns = 4 if len(panels) <= 8 else 5
    lines = max(1, -(-len(panels) // columns))
    figure, axes = plt.subplots(lines, columns, figsize=(4 * columns, 3.75 * lines), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (title, key, better) in zip(axes.flat, panels):
        for x, peer in enumerate(peers):
            values = [v for v in (metric(r, peer, key) for r in runs) if v is not None]
            if not values:
                if any(key.split("/")[0] in r.get(peer, {}) for r in runs):
                    ax.text(x, 0, "failed", ha="center", va="bottom", fontsize=8, rotation=90)
                continue  # else not run against this peer (a binary row's dash)
            mid = statistics.median(values)
            ax.bar(x, mid, color=colours[peer], yerr=[[mid - min(values)], [max(values) - mid]], capsize=3)
            ax.text(x, max(values), f"{mid:,.0f}" if mid >= 100 else f"{mid:.2g}", ha="center", va="bottom",
                    fontsize=8)
        ax.set_title(f"{title}\n({better} is better)", fontsize=10)
        ax.set_xticks(range(len(peers)), [LABELS[peer] for peer in peers], rotation=20, fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
    m = data["machine"]
    figure.suptitle(f"Igor and its peers, {m['date']}, {m['cores']} cores, Python {m['python']}: "
                    f"median of {len(runs)} run(s), whiskers min – max", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


README_BEGIN = "<!-- results: begin (written by python -m bench.peers --update-readme) -->"
README_END = "<!-- results: end -->"


def update_readme(table: str) -> None:
    """Put ``table`` between the results markers of bench/README.md."""
    path = os.path.join(ROOT, "bench", "README.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head, begin, rest = text.partition(README_BEGIN)
    _, end, tail = rest.partition(README_END)
    if not begin or not end:
        raise SystemExit(f"{path} has no {README_BEGIN} ... {README_END} section to update")
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + begin + "\n" + table + end + tail)
