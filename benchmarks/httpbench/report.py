"""Turn the measured points into the printed table, Markdown, JSON and the c=8 chart."""

from __future__ import annotations

import json
from pathlib import Path

from .load import Point

CHART_CONCURRENCY = 8
MEMORY_TITLE = ("seconds from start to the first answered upload, and memory of every server "
                "process after its last point, with its growth since the warm-up (every image "
                "at the highest concurrency, and the service's requests of many images) before "
                "the first point")


def report_memory_title() -> str:
    """The memory table's title, capitalised for Markdown."""
    return MEMORY_TITLE[0].upper() + MEMORY_TITLE[1:]


def find_point(points: list[Point], system: str, image: str, concurrency: int) -> Point | None:
    """The point measured for this system, image and concurrency, if any."""
    for point in points:
        if (point.system, point.image, point.concurrency) == (system, image, concurrency):
            return point
    return None


def ratio(point: Point, reference: Point | None) -> str:
    """``point``'s req/s over the reference's, as ``0.42x``; a dash without a reference."""
    if reference is None or reference.requests_per_second <= 0:
        return "-"
    return f"{point.requests_per_second / reference.requests_per_second:.2f}x"


def point_rows(points: list[Point]) -> list[list[str]]:
    """One row per point: system, image, c, req/s, p50, p99, errors, vs plain, vs floor."""
    rows = []
    for point in points:
        plain = find_point(points, "plain", point.image, point.concurrency)
        floor = find_point(points, "floor", point.image, point.concurrency)
        rows.append([point.system, point.image, str(point.concurrency),
                     f"{point.requests_per_second:,.1f}", f"{point.p50_ms:.2f}",
                     f"{point.p99_ms:.2f}", str(point.errors), ratio(point, plain),
                     ratio(point, floor)])
    return rows


POINT_HEADER = ["system", "image", "c", "req/s", "p50 ms", "p99 ms", "errors", "vs plain",
                "vs floor"]
MEMORY_HEADER = ["system", "ready s", "processes", "RSS sum MiB", "PSS sum MiB",
                 "RSS growth", "RSS per process MiB"]
NUMERIC = {"c", "req/s", "p50 ms", "p99 ms", "errors", "vs plain", "vs floor", "processes",
           "RSS sum MiB", "PSS sum MiB", "ready s", "RSS growth"}


def memory_rows(systems: list[dict]) -> list[list[str]]:
    """One row per system that ran: its process count, summed and per-process memory."""
    rows = []
    for system in systems:
        memory = system.get("memory")
        if not memory:
            continue
        each = ", ".join(f"{p['label']} {p['rss_mib']:.0f}" for p in memory["processes"])
        start = system.get("memory_start") or memory
        growth = memory["rss_sum_mib"] / start["rss_sum_mib"] - 1 if start["rss_sum_mib"] else 0
        rows.append([system["name"], f"{system.get('startup_s', 0):.1f}",
                     str(len(memory["processes"])), f"{memory['rss_sum_mib']:.0f}",
                     f"{memory['pss_sum_mib']:.0f}", f"{growth:+.1%}", each])
    return rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded for a terminal, numbers right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.rjust(width) if name in NUMERIC else cell.ljust(width)
                 for cell, width, name in zip(row, widths, header, strict=True)]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub Markdown table, numbers right-aligned."""
    align = ["---:" if name in NUMERIC else "---" for name in header]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(machine: dict) -> str:
    """The machine in one line."""
    return (f"{machine['nproc']} cores ({machine['cpu_model']}), {machine['memory_gib']} GiB, "
            f"Python {machine['python']}, {machine['wrk']}")


def systems_lines(systems: list[dict]) -> list[str]:
    """What each system is and how it was tuned, or why it was skipped."""
    lines = []
    for system in systems:
        if system["status"] == "skipped":
            lines.append(f"- **{system['name']}**: SKIPPED: {system['reason']}")
        else:
            info = f"; it reported: `{system['info']}`" if system.get("info") else ""
            lines.append(f"- **{system['name']}**: {system['tuning']}{info}")
    return lines


def markdown(results: dict) -> str:
    """The whole report as Markdown, ready to paste into the README."""
    points = [Point(**{k: v for k, v in p.items() if k != "errors"}) for p in results["points"]]
    parts = [
        f"## HTTP benchmark, {results['date']}",
        "",
        f"Machine: {machine_line(results['machine'])}. wrk on the same cores, "
        f"{results['seconds_per_point']:g} s per point; figures are noisy, compare within a run.",
        "",
        "Images: " + "; ".join(f"`{i['kind']}` {i['description']}" for i in results["images"]),
        "",
        *systems_lines(results["systems"]),
        "",
        markdown_table(POINT_HEADER, point_rows(points)),
        "",
        f"{report_memory_title()} (RSS counts shared pages in every process; PSS shares "
        "them out):",
        "",
        markdown_table(MEMORY_HEADER, memory_rows(results["systems"])),
    ]
    for run in results.get("inprocess", []):
        output = run["output"]
        if not any(line.startswith("|") for line in output.splitlines()):
            output = f"```text\n{output}\n```"
        parts += ["", f"### {run['title']}", "", f"`{' '.join(run['command'][1:])}` "
                  f"(exit {run['returncode']})", "", output]
    return "\n".join(parts) + "\n"


def write_json(results: dict, path: Path) -> None:
    """The results as indented JSON."""
    path.write_text(json.dumps(results, indent=2) + "\n")


def value_at(points: list[dict], system: str, image: str, key: str) -> float:
    """One figure of one system and image among ``points``, 0 where it was not measured."""
    for point in points:
        if point["system"] == system and point["image"] == image:
            return point[key]
    return 0.0


def chart(results: dict, path: Path) -> None:
    """Two panels at c=8: req/s and p99 latency per image, one bar per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [p for p in results["points"] if p["concurrency"] == CHART_CONCURRENCY]
    systems = [s["name"] for s in results["systems"] if s["status"] == "ran"]
    images = [i["kind"] for i in results["images"]]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    width = 0.8 / max(1, len(systems))
    for panel, (key, label) in zip(axes, [("requests_per_second", "requests/s (higher is better)"),
                                          ("p99_ms", "p99 latency, ms (lower is better)")],
                                   strict=True):
        for index, system in enumerate(systems):
            values = [value_at(points, system, image, key) for image in images]
            offsets = [x + (index - (len(systems) - 1) / 2) * width for x in range(len(images))]
            bars = panel.bar(offsets, values, width, label=system)
            panel.bar_label(bars, fmt="%.0f", fontsize=7, padding=1)
        panel.set_xticks(range(len(images)), images)
        panel.set_title(label, fontsize=10)
        panel.grid(axis="y", alpha=0.3)
        panel.set_axisbelow(True)
    axes[0].legend(fontsize=8, ncols=2)
    machine = results["machine"]
    figure.suptitle(f"Digit service vs peers over HTTP, c={CHART_CONCURRENCY}, "
                    f"{results['seconds_per_point']:g} s per point - {results['date']}, "
                    f"{machine['nproc']} cores {machine['cpu_model']}", fontsize=10)
    figure.savefig(path, dpi=100)
    plt.close(figure)
