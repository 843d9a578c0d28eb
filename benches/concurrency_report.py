"""Tables, targets and the chart of benches/concurrency.py's results (the dict it saves as JSON).

    python benches/concurrency_report.py chart concurrency-latest.json concurrency-latest.png

Standard library only, but for the chart (matplotlib): concurrency.py draws it with whichever
of its Pythons has matplotlib.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from peers.report import draw_with_first

BENCHES = Path(__file__).resolve().parent
KIND_ORDER = ("coalesced", "uncoalesced", "baseline", "serve", "infinity")
MODE_LABEL = {
    "threads": "threads, encode",
    "asyncio": "coroutines, aencode",
    "batch": "batches, encode",
    "http": "HTTP clients",
}
# The issue's targets
SCALING_MIN = 1.4  # 16 and 64 callers, throughput over one caller back to back
P99_MAX_BATCHES = 2.0  # p99 over the time of one full batch (encode of 64 texts)
ONE_CALLER_MAX = 1.05  # one caller's median latency over today's (the baseline wheel)
HTTP_MIN = 0.8  # serve's rate over the in-process coalesced rate, same concurrency
RSS_MAX = 1.3  # serve's peak RSS under load over an idle Encoder's RSS
FULL_BATCH = 64


def _median(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the calls at or below it."""
    if not sorted_ms:
        return float("nan")
    return sorted_ms[max(0, math.ceil(q * len(sorted_ms)) - 1)]


def summarise_cell(cell: str, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """One configuration's cell over the rounds: rates per round, latencies pooled."""
    mode = cell.split("/")[0]
    out: dict[str, Any] = {"rounds": [a["round"] for a in answers]}
    if mode == "batch":
        out["rate"] = [a["texts"] / (sum(a["ms"]) / 1e3) for a in answers]
        out["batch_ms"] = [statistics.median(a["ms"]) for a in answers]
    else:
        out["rate"] = [a["calls"] / a["window"] for a in answers]
        out["p50_round"] = [percentile(sorted(a["ms"]), 0.5) for a in answers]
    pooled = sorted(ms for a in answers for ms in a["ms"])
    out.update({f"p{q}": percentile(pooled, q / 100) for q in (50, 90, 99)})
    out["max"] = pooled[-1] if pooled else float("nan")
    out["n"] = len(pooled)
    out["cpu_use"] = [a["cpu"] / a["wall"] for a in answers]
    if mode == "http":
        out["client_cpu_use"] = [a["client_cpu"] / a["wall"] for a in answers]
        out["errors"] = sum(a["errors"] for a in answers)
        out["first_error"] = next((a["first_error"] for a in answers if a["first_error"]), None)
    return out


def paired(results: dict[str, Any], a: tuple[str, str], b: tuple[str, str], what: str) -> float:
    """Median over rounds of a's value over b's in the same round (config key, cell)."""
    cells = results["cells"]
    if a[1] not in cells.get(a[0], {}) or b[1] not in cells.get(b[0], {}):
        return float("nan")
    ca, cb = cells[a[0]][a[1]], cells[b[0]][b[1]]
    by_round = dict(zip(cb["rounds"], cb[what]))
    return _median([x / by_round[r] for r, x in zip(ca["rounds"], ca[what]) if r in by_round])


def full_batch_ms(results: dict[str, Any], key: str) -> float:
    cell = results["cells"].get(key, {}).get(f"batch/{FULL_BATCH}")
    return _median(cell["batch_ms"]) if cell else float("nan")


def target(name: str, compute: str, value: float, goal: str, met: bool | None, shown: str) -> dict:
    if math.isnan(value):
        met = None
        if "not measured" not in shown:
            shown = "not measured"
    return {
        "target": name,
        "compute": compute,
        "value": None if math.isnan(value) else value,
        "measured": shown,
        "goal": goal,
        "met": met,
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    meta, cells, out = results["meta"], results["cells"], []
    for compute in meta["computes"]:
        co = f"{compute}:coalesced"
        batch = full_batch_ms(results, co)
        for n in (16, 64):
            for mode in ("threads", "asyncio"):
                cell = f"{mode}/{n}"
                x = paired(results, (co, cell), (co, "threads/1"), "rate")
                out.append(target(
                    f"{n} callers ({MODE_LABEL[mode]}): throughput ÷ one caller back to back",
                    compute, x, f"≥ {SCALING_MIN}×", x >= SCALING_MIN, f"{x:.2f}×",
                ))  # fmt: skip
                p99 = cells.get(co, {}).get(cell, {}).get("p99", float("nan"))
                out.append(target(
                    f"{n} callers ({MODE_LABEL[mode]}): p99 ÷ one full batch ({FULL_BATCH} texts)",
                    compute, p99 / batch, f"≤ {P99_MAX_BATCHES}×", p99 / batch <= P99_MAX_BATCHES,
                    f"{p99:.1f} ms ÷ {batch:.1f} ms = {p99 / batch:.2f}×",
                ))  # fmt: skip
        base = f"{compute}:baseline"
        x = paired(results, (co, "threads/1"), (base, "threads/1"), "p50_round")
        shown = f"{x:.3f}×" if not math.isnan(x) else "not measured (no --baseline-python)"
        off = paired(
            results, (co, "threads/1"), (f"{compute}:uncoalesced", "threads/1"), "p50_round"
        )
        if not math.isnan(off):
            shown += f"; ÷ coalesce=False of the same wheel: {off:.3f}×"
        out.append(target(
            "one caller: median latency ÷ today's (the baseline wheel)",
            compute, x, f"≤ {ONE_CALLER_MAX}×", x <= ONE_CALLER_MAX, shown,
        ))  # fmt: skip
        serve = f"{compute}:serve"
        for n in meta["http_clients"]:
            inproc = [
                paired(results, (serve, f"http/{n}"), (co, f"{m}/{n}"), "rate")
                for m in ("threads", "asyncio")
            ]
            x = min(inproc, key=lambda v: math.inf if math.isnan(v) else v)
            shown = (
                f"{x:.2f}× (÷ threads {inproc[0]:.2f}×, ÷ coroutines {inproc[1]:.2f}×)"
                if serve in cells
                else "not measured (serve did not run)"
            )
            out.append(target(
                f"HTTP, {n} clients: serve ÷ in-process coalesced, {n} callers (the faster mode)",
                compute, x, f"≥ {HTTP_MIN}×", x >= HTTP_MIN, shown,
            ))  # fmt: skip
            if compute == "float32":
                inf = "float32:infinity"
                x = paired(results, (serve, f"http/{n}"), (inf, f"http/{n}"), "rate")
                why = next(
                    (m for m in meta["notes"] if m.startswith("infinity-emb")),
                    "infinity-emb ran" if inf in cells else "",
                )
                if serve not in cells:
                    why += "; serve did not run" if why else "serve did not run"
                shown = f"{x:.2f}×" if not math.isnan(x) else f"not measured ({why})"
                out.append(target(
                    f"HTTP, {n} clients: serve ÷ infinity-emb (torch fp32, same threads)",
                    compute, x, "> 1×", x > 1.0, shown,
                ))  # fmt: skip
        peak = results["configs"].get(serve, {}).get("info", {}).get("memory_end", {})
        idle = results["idle"].get(compute, {})
        x = peak.get("peak_mb", float("nan")) / idle.get("rss_mb", float("nan"))
        shown = (
            f"{peak['peak_mb']:.0f} MB ÷ {idle['rss_mb']:.0f} MB = {x:.2f}×"
            if not math.isnan(x)
            else "not measured"
        )
        out.append(target(
            "serve: peak RSS under load ÷ an idle Encoder's RSS",
            compute, x, f"≤ {RSS_MAX}×", x <= RSS_MAX, shown,
        ))  # fmt: skip
    return out


def summarise(
    meta: dict[str, Any],
    configs: dict[str, Any],
    raw: dict[str, dict[str, list[dict[str, Any]]]],
    idle: dict[str, dict[str, float]],
    cosines: dict[str, float],
) -> dict[str, Any]:
    meta = {**meta, "computes": list(dict.fromkeys(c["compute"] for c in configs.values()))}
    results = {
        "meta": meta,
        "configs": configs,
        "cells": {
            key: {cell: summarise_cell(cell, answers) for cell, answers in by_cell.items()}
            for key, by_cell in raw.items()
        },
        "idle": idle,
        "cosines": cosines,
    }
    results["targets"] = targets(results)
    return results


def _f(x: float | None, spec: str) -> str:
    return "–" if x is None or math.isnan(x) else format(x, spec)


def _ordered(results: dict[str, Any], compute: str) -> list[str]:
    keys = [k for k, c in results["configs"].items() if c["compute"] == compute]
    return sorted(keys, key=lambda k: KIND_ORDER.index(results["configs"][k]["kind"]))


def _cell_order(cell: str) -> tuple[int, int]:
    mode, n = cell.split("/")
    return (list(MODE_LABEL).index(mode), int(n))


def markdown(results: dict[str, Any], chart: str | None) -> str:
    meta = results["meta"]
    lines = [
        "# Concurrency: many callers, one text each",
        "",
        f"`{meta['command']}` ({meta['date']}, {meta['seconds'] / 60:.1f} min). How to read it:"
        " [COMPARE.md](COMPARE.md#concurrency-many-callers-one-text-each).",
        "",
        f"- machine: {meta['machine']}; Python {meta['python']}; threads={meta['threads']} "
        f"per Encoder and per server",
        f"- texts: {meta['texts']}",
        f"- rounds: {meta['rounds']}; each cell {meta['warmup_s']:g} s untimed, then "
        f"{meta['duration_s']:g} s timed (batches: half that); configurations in a fresh "
        "shuffled order per cell and round",
        f"- other processes took {_f(100 * meta['noise'], '.1f')}% of the machine while cells ran"
        + (" (noisy: above 5%)" if meta["noise"] > 0.05 else "")
        + f"; the hypervisor stole {_f(100 * meta.get('steal', float('nan')), '.1f')}% of its CPU"
        " time (other guests of the host)",
    ]
    if meta.get("baseline"):
        b = meta["baseline"]
        lines.append(f"- baseline: {b.get('revision') or '?'} ({b['python']})")
    for key, c in results["configs"].items():
        info, what = c["info"], []
        if "module" in info:
            what.append(f"minilm_fast {info.get('version')} from {info['module']}")
        if "start_s" in info:
            what.append(f"healthy {info['start_s']:.1f} s after start")
        lines.append(f"- `{key}`: {c['label']}" + (f" ({'; '.join(what)})" if what else ""))
    for note in meta["notes"]:
        lines.append(f"- note: {note}")
    if meta.get("quick"):
        lines.append("- quick run: too short to judge the targets")
    lines += [
        "",
        "## Targets",
        "",
        "| target | compute | measured | goal | met |",
        "|---|---|---|---|---|",
    ]
    for t in results["targets"]:
        met = {True: "met", False: "**not met**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['target']} | {t['compute']} | {t['measured']} | {t['goal']} | {met} |")
    if chart:
        lines += ["", f"![throughput against callers]({chart})"]
    for compute in meta["computes"]:
        lines += [
            "",
            f"## {compute}",
            "",
            "calls/s (batches: texts/s) is the median over rounds; × 1 caller is the median of "
            "the within-round ratio to the same configuration's one caller back to back (HTTP: "
            "one client); p50/p99 over every call of every round; p99 ÷ batch is over the time "
            f"of one `encode` of {FULL_BATCH} texts (that configuration's); CPU/wall is the "
            "process's (HTTP: the server's, then the load generator's).",
            "",
            "| configuration | mode | callers | calls/s | × 1 caller | p50 ms | p99 ms "
            "| p99 ÷ batch | CPU/wall |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key in _ordered(results, compute):
            label = results["configs"][key]["label"]
            batch = full_batch_ms(results, key)
            cells = results["cells"].get(key, {})
            for cell in sorted(cells, key=_cell_order):
                s = cells[cell]
                mode, n = cell.split("/")
                one = "http/1" if mode == "http" else "threads/1"
                scale = paired(results, (key, cell), (key, one), "rate")
                cpu = _f(_median(s["cpu_use"]), ".2f")
                if mode == "http":
                    cpu += f" ({_f(_median(s['client_cpu_use']), '.2f')})"
                    if s["errors"]:
                        cpu += f"; {s['errors']} errors: {s['first_error']}"
                if mode == "batch":
                    lines.append(
                        f"| {label} | batches of {n} | 1 | {_f(_median(s['rate']), '.0f')} texts/s"
                        f" | – | {_f(_median(s['batch_ms']), '.1f')} per batch | – | – | {cpu} |"
                    )
                    continue
                lines.append(
                    f"| {label} | {MODE_LABEL[mode]} | {n} | {_f(_median(s['rate']), '.0f')} "
                    f"| {_f(scale, '.2f')}× | {_f(s['p50'], '.2f')} | {_f(s['p99'], '.1f')} "
                    f"| {_f(s['p99'] / batch, '.2f')} | {cpu} |"
                )
        lines += _against(results, compute)
    lines += _memory(results)
    return "\n".join(lines) + "\n"


def _against(results: dict[str, Any], compute: str) -> list[str]:
    """Coalescing against its absence: the same wheel with coalesce=False, and the baseline."""
    co = f"{compute}:coalesced"
    others = [k for k in (f"{compute}:uncoalesced", f"{compute}:baseline") if k in results["cells"]]
    if co not in results["cells"] or not others:
        return []
    heads = [results["configs"][k]["label"] for k in others]
    lines = [
        "",
        f"Coalescing ({compute}): within-round ratios, median over rounds.",
        "",
        "| mode | callers | " + " | ".join(f"calls/s ÷ {h}" for h in heads) + " | "
        + " | ".join(f"p50 ÷ {h}" for h in heads) + " |",
        "|---|---:|" + "---:|" * (2 * len(others)),
    ]  # fmt: skip
    for cell in sorted(results["cells"][co], key=_cell_order):
        if not all(cell in results["cells"][k] for k in others):
            continue
        mode, n = cell.split("/")
        what = "p50_round" if mode != "batch" else "batch_ms"
        rates = [paired(results, (co, cell), (k, cell), "rate") for k in others]
        p50s = [paired(results, (co, cell), (k, cell), what) for k in others]
        lines.append(
            f"| {MODE_LABEL[mode]} | {n} | "
            + " | ".join(f"{_f(x, '.2f')}×" for x in rates)
            + " | "
            + " | ".join(f"{_f(x, '.2f')}×" for x in p50s)
            + " |"
        )
    return lines


def _memory(results: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Memory",
        "",
        "Idle Encoder: a fresh process that loads the Encoder, encodes one text and reads its "
        "VmRSS and VmHWM. Servers: VmRSS once healthy, and VmHWM (the peak) after every round "
        "(child processes added).",
        "",
        "| compute | what | RSS MB | peak MB |",
        "|---|---|---:|---:|",
    ]
    for compute, m in results["idle"].items():
        lines.append(
            f"| {compute} | idle Encoder | {_f(m.get('rss_mb'), '.0f')} "
            f"| {_f(m.get('peak_mb'), '.0f')} |"
        )
    for c in results["configs"].values():
        if "idle_memory" not in c["info"]:
            continue
        idle, end = c["info"]["idle_memory"], c["info"].get("memory_end", {})
        lines.append(
            f"| {c['compute']} | {c['label']}, healthy / after the rounds "
            f"| {_f(idle.get('rss_mb'), '.0f')} / {_f(end.get('rss_mb'), '.0f')} "
            f"| {_f(end.get('peak_mb'), '.0f')} |"
        )
    return lines


def chart(results: dict[str, Any], path: Path) -> None:
    """Calls/s against concurrent callers, one panel per compute: a colour per configuration,
    a line style per mode; the coalesced Encoder's batched rates as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    computes = results["meta"]["computes"]
    fig, axes = plt.subplots(1, len(computes), figsize=(6 * len(computes), 4.8), squeeze=False)
    colors = dict(zip(KIND_ORDER, ("C0", "C1", "C2", "C3", "C4")))
    styles = {"threads": "-", "asyncio": "--", "http": ":"}
    seen: dict[str, Line2D] = {}  # the legend: configurations (colours), then modes (styles)
    modes: dict[str, Line2D] = {}
    for ax, compute in zip(axes[0], computes):
        ticks: set[int] = set()
        for key in _ordered(results, compute):
            conf = results["configs"][key]
            cells = results["cells"].get(key, {})
            color, wide = colors[conf["kind"]], conf["kind"] in ("coalesced", "serve")
            for mode, style in styles.items():
                pts = sorted(
                    (int(c.split("/")[1]), _median(s["rate"]))
                    for c, s in cells.items()
                    if c.startswith(mode + "/")
                )
                if pts:
                    ticks.update(x for x, _ in pts)
                    ax.plot(*zip(*pts), linestyle=style, marker="s" if mode == "http" else "o",
                            color=color, linewidth=2.4 if wide else 1.3)  # fmt: skip
                    seen.setdefault(conf["label"], Line2D([], [], color=color, linewidth=2))
                    modes.setdefault(
                        MODE_LABEL[mode], Line2D([], [], color="k", linestyle=style, linewidth=1)
                    )
            for b, shade in ((16, "0.6"), (64, "0.35")):
                if conf["kind"] == "coalesced" and f"batch/{b}" in cells:
                    y = _median(cells[f"batch/{b}"]["rate"])
                    ax.axhline(y, color=shade, linestyle="-.", linewidth=1)
                    ax.annotate(f"batches of {b}: {y:.0f} texts/s", (1, y), fontsize=7,
                                color=shade, xytext=(2, 2), textcoords="offset points")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ticks), [str(t) for t in sorted(ticks)])
        ax.set_xlabel("concurrent callers, one text per call")
        ax.set_ylabel("calls / s")
        ax.set_ylim(bottom=0)
        ax.set_title(compute)
        ax.grid(alpha=0.3)
    seen.update(modes)
    ncol = 2 * len(computes)
    fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=ncol, fontsize=8,
               frameon=False)  # fmt: skip
    meta = results["meta"]
    fig.suptitle(f"{meta['machine']}, threads={meta['threads']}", fontsize=10)
    fig.tight_layout(rect=(0, 0.02 + 0.045 * math.ceil(len(seen) / ncol), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_chart_somewhere(json_path: Path, png_path: Path, pythons: list[str]) -> str | None:
    """Draw with the first Python that has matplotlib; None when drawn, else why not."""
    script = str(BENCHES / "concurrency_report.py")
    return draw_with_first(pythons, [script, "chart", str(json_path), str(png_path)])


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "chart":
        sys.exit("usage: python concurrency_report.py chart RESULTS.json OUT.png")
    chart(json.loads(Path(sys.argv[2]).read_text(encoding="utf-8")), Path(sys.argv[3]))
