"""Tables and the chart for benches/compare.py's results (the dict it saves as JSON).

    python -m peers.report chart compare-latest.json compare-latest.png

The chart needs matplotlib; compare.py draws it with whichever of its Pythons has it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .engines import BASELINE_OF, MINILM_FAST_COMPUTE, SPECS

BENCHES = Path(__file__).resolve().parent.parent


def machine_description() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _ratio(x: float, best: float | None) -> str:
    return f"{x / best:.2f}×" if best else "–"


def best_fp32_peer(results: dict[str, Any], values: dict[str, float], higher: bool) -> str | None:
    """The fp32 peer (not minilm_fast, nor its baseline) with the best value."""
    peers = [
        k
        for k, e in results["engines"].items()
        if k not in MINILM_FAST_COMPUTE and e["precision"] == "fp32" and k in values
    ]
    if not peers:
        return None
    return (max if higher else min)(peers, key=lambda k: values[k])


def _engine_label(results: dict[str, Any], key: str) -> str:
    e = results["engines"][key]
    label = str(e["label"])
    if key in MINILM_FAST_COMPUTE and key not in BASELINE_OF:
        label = f"**{label}**"
    return label


def _version(results: dict[str, Any], key: str) -> str:
    versions = results["engines"][key]["versions"]
    return ", ".join(f"{k} {v}" for k, v in versions.items())


def _peak(results: dict[str, Any], key: str, wl: str) -> str:
    peak = results["engines"][key].get("peak_mb", {}).get(wl)
    return f"{peak:.0f} MB" if peak is not None else "–"


def summary_rows(results: dict[str, Any]) -> list[tuple[str, float, str, float]]:
    """(workload, minilm_fast value, best fp32 peer label, its value) for the headline."""
    rows = []
    for wl in ("short", "long"):
        values = {k: _median(v["sps"]) for k, v in results["throughput"][wl].items()}
        best = best_fp32_peer(results, values, higher=True)
        if "minilm_fast" in values and best:
            rows.append(
                (wl, values["minilm_fast"], results["engines"][best]["label"], values[best])
            )
    values = {k: _median(v["ms"]) for k, v in results["latency"].items()}
    best = best_fp32_peer(results, values, higher=False)
    if "minilm_fast" in values and best:
        rows.append(
            ("query", values["minilm_fast"], results["engines"][best]["label"], values[best])
        )
    return rows


def slow_calls(ms: list[float], factor: float = 1.5, run: int = 3) -> tuple[int, int]:
    """Calls slower than `factor` × the median, and how many of them sit in runs of at least
    `run` consecutive slow calls."""
    slow = np.asarray(ms) > factor * float(np.median(ms))
    in_runs = length = 0
    for is_slow in [*slow.tolist(), False]:
        if is_slow:
            length += 1
            continue
        if length >= run:
            in_runs += length
        length = 0
    return int(slow.sum()), in_runs


def _target_row(goal: str, measured: str, ok: bool | None) -> str:
    verdict = "–" if ok is None else ("met" if ok else "**not met**")
    return f"| {goal} | {measured} | {verdict} |"


def targets(results: dict[str, Any]) -> list[str]:
    """The speed issue's targets, each with what this run measured."""
    rows = []
    for wl, mine, _peer, theirs in summary_rows(results):
        if wl == "short":
            ratio = mine / theirs
            rows.append(
                _target_row("short texts ≥ 1.10× best fp32 peer", f"{ratio:.2f}×", ratio >= 1.1)
            )
        elif wl == "long":
            ratio = mine / theirs
            rows.append(
                _target_row("long texts ≥ 0.90× best fp32 peer", f"{ratio:.2f}×", ratio >= 0.9)
            )
        else:
            ratio = mine / theirs
            rows.append(
                _target_row(
                    "one query: median ≤ 0.70× best fp32 peer's",
                    f"{mine:.2f} ms vs {theirs:.2f} ms ({ratio:.2f}×)",
                    ratio <= 0.7,
                )
            )
    own = results["latency"].get("minilm_fast", {}).get("ms")
    if own:
        p50, p99 = float(np.percentile(own, 50)), float(np.percentile(own, 99))
        rows.append(
            _target_row(
                "one query: p99 ≤ 1.5× own median",
                f"{p99:.2f} ms = {p99 / p50:.2f}× median",
                p99 <= 1.5 * p50,
            )
        )
    t1 = results.get("threads1_cpu_use") or {}
    if t1:
        worst = max(t1.values())
        rows.append(
            _target_row(
                "threads=1: CPU time / wall ≤ 1.1", f"{worst:.2f} (worst workload)", worst <= 1.1
            )
        )
    scaling = results.get("thread_scaling") or {}
    if scaling:
        rows.append(
            _target_row(
                f"threads={scaling['threads']} ≥ 1.8× threads=1 on long texts",
                f"{scaling['ratio']:.2f}× ({scaling['tn_sps']:.1f} vs "
                f"{scaling['t1_sps']:.1f} texts/s)",
                scaling["ratio"] >= 1.8,
            )
        )
    engines = results["engines"]
    if "minilm_fast" in engines and "onnxruntime" in engines:
        mine_peaks = engines["minilm_fast"].get("peak_mb", {})
        ort_peaks = engines["onnxruntime"].get("peak_mb", {})
        shared = [wl for wl in mine_peaks if wl in ort_peaks]
        if shared:
            shown = ", ".join(
                f"{wl} {mine_peaks[wl]:.0f} vs {ort_peaks[wl]:.0f} MB" for wl in shared
            )
            ok = all(mine_peaks[wl] <= ort_peaks[wl] for wl in shared)
            rows.append(_target_row("peak RSS ≤ ONNX Runtime's", shown, ok))
    if "minilm_fast" in engines:
        load = engines["minilm_fast"]["load_s"]
        rows.append(_target_row("load → first embedding ≤ 0.3 s", f"{load:.2f} s", load <= 0.3))
    if not rows:
        return []
    return [
        "",
        "## Targets of the speed issue",
        "",
        "| target | measured | |",
        "|---|---|---|",
        *rows,
    ]


# The quantized-compute issue's targets. Speed: (engine, workload, comparator, bound), where
# the comparator "fp32" is the workload's best fp32 peer; texts/s ratios must reach the bound,
# the one-query median's ratio must stay at or under it. Quality: (engine, largest STS-B
# Spearman difference to minilm_fast float32 in points, least mean cosine to its vectors).
QUANTIZED_SPEED = [
    ("minilm_fast-int8", "short", "fp32", 2.0),
    ("minilm_fast-int8", "short", "ctranslate2-int8", 1.2),
    ("minilm_fast-int8", "long", "fp32", 1.8),
    ("minilm_fast-int8", "query", "fp32", 0.5),
    ("minilm_fast-bf16", "long", "fp32", 1.5),
]
QUANTIZED_QUALITY = [("minilm_fast-int8", 0.15, 0.995), ("minilm_fast-bf16", 0.05, 0.999)]


def _speeds(results: dict[str, Any], wl: str) -> dict[str, float]:
    """Texts/s (short, long) or median ms (query) of each engine."""
    if wl == "query":
        return {k: _median(v["ms"]) for k, v in results["latency"].items()}
    return {k: _median(v["sps"]) for k, v in results["throughput"][wl].items()}


def _paired_ratios(results: dict[str, Any], wl: str, key: str, other: str) -> list[float]:
    """`key`'s texts/s ÷ `other`'s, round by round (both ran once in every round)."""
    runs = results["throughput"][wl]
    return [mine / theirs for mine, theirs in zip(runs[key]["sps"], runs[other]["sps"])]


def _speed_row(results: dict[str, Any], key: str, wl: str, other: str, bound: float) -> str:
    mode = SPECS[key].precision
    values = _speeds(results, wl)
    if other == "fp32":
        against = "best fp32 peer"
        peer = best_fp32_peer(results, values, higher=wl != "query")
    else:
        against, peer = SPECS[other].label, other if other in values else None
    if wl == "query":
        goal = f"{mode}: one query, median ≤ {bound:.2f}× {against}'s"
    else:
        goal = f"{mode}: {wl} texts ≥ {bound:.2f}× {against}"
    if peer is None or key not in values:
        return _target_row(goal, f"not measured: no {against} in this run", None)
    ratio = values[key] / values[peer]
    unit = "ms" if wl == "query" else "texts/s"
    digits = 2 if wl == "query" else 1
    shown = (
        f"{ratio:.2f}× ({values[key]:.{digits}f} vs {values[peer]:.{digits}f} {unit}, "
        f"{results['engines'][peer]['label']})"
    )
    return _target_row(goal, shown, ratio <= bound if wl == "query" else ratio >= bound)


def _quality_rows(results: dict[str, Any], key: str, max_diff: float, min_mean: float) -> list[str]:
    mode = SPECS[key].precision
    quality = results.get("quality") or {}
    mine = (quality.get("engines") or {}).get(key, {})
    ref = quality.get("reference_scores") or {}
    goal = f"{mode}: STS-B Spearman within {max_diff:.2f} points of float32"
    if "spearman" in mine and "spearman" in ref:
        diff = mine["spearman"] - ref["spearman"]
        shown = f"{mine['spearman']:.2f} vs {ref['spearman']:.2f} ({diff:+.2f})"
        rows = [_target_row(goal, shown, abs(diff) <= max_diff)]
    else:
        why = "no minilm_fast float32 vectors" if "spearman" in mine else "--texts is not STS-B"
        rows = [_target_row(goal, f"not measured: {why}", None)]
    goal = f"{mode}: mean cosine to float32 ≥ {min_mean}"
    if "mean_cos" in mine:
        shown = f"{mine['mean_cos']:.5f} (min {mine['min_cos']:.5f})"
        rows.append(_target_row(goal, shown, mine["mean_cos"] >= min_mean))
    else:
        rows.append(_target_row(goal, "not measured: no minilm_fast float32 vectors", None))
    return rows


def quantized_targets(results: dict[str, Any]) -> list[str]:
    """The quantized-compute issue's targets for minilm_fast's int8 and bf16 engines, each with
    what this run measured; a mode that was asked for but could not run says why."""
    skipped = results.get("skipped") or {}
    rows = []
    for key in ("minilm_fast-int8", "minilm_fast-bf16"):
        if key in skipped:
            why = skipped[key].splitlines()[0]
            rows.append(
                _target_row(f"{SPECS[key].precision}: every target", f"not run: {why}", None)
            )
        elif key in results["engines"]:
            rows += [_speed_row(results, *t) for t in QUANTIZED_SPEED if t[0] == key]
            rows += [
                r for t in QUANTIZED_QUALITY if t[0] == key for r in _quality_rows(results, *t)
            ]
    if not rows:
        return []
    texts = (results.get("quality") or {}).get("texts", 0)
    return [
        "",
        "## Targets of the quantized-compute issue",
        "",
        "minilm_fast's `compute='int8'` and `compute='bfloat16'` engines against this run's fp32 "
        f"peers, CTranslate2 int8 and minilm_fast float32 (quality over {texts} short texts, "
        "see [Quality](#quality)).",
        "",
        "| target | measured | |",
        "|---|---|---|",
        *rows,
    ]


# Before and after: current ÷ baseline must be at least this for texts/s, at most its inverse
# bound (1.03) for the one-query median.
BASELINE_TOLERANCE = 0.03


def baseline_table(results: dict[str, Any]) -> list[str]:
    """minilm_fast's engines against the same engines with the baseline's wheel, in this run:
    short and long texts/s and the one-query median, current ÷ baseline, each within 3% or not."""
    meta = results["meta"].get("baseline")
    if not meta:
        return []
    skipped = results.get("skipped") or {}
    low, high = 1 - BASELINE_TOLERANCE, 1 + BASELINE_TOLERANCE
    rows = []
    for base, key in BASELINE_OF.items():
        mode = MINILM_FAST_COMPUTE[key]
        missing = [k for k in (key, base) if k not in results["engines"]]
        if missing:
            why = "; ".join(
                skipped[k].splitlines()[0] if k in skipped else f"{k} not among --engines"
                for k in missing
            )
            rows.append(f"| {mode} | every workload | – | – | not measured: {why} | – | – |")
            continue
        for wl in ("short", "long", "query"):
            values = _speeds(results, wl)
            mine, theirs = values.get(key), values.get(base)
            if mine is None or theirs is None:
                continue
            if wl == "query":
                ratio, spread = mine / theirs, "–"
                what, shown = "one query, median", (f"{mine:.2f} ms", f"{theirs:.2f} ms")
                ok = ratio <= high
            else:
                paired = _paired_ratios(results, wl, key, base)
                ratio = statistics.median(paired)
                spread = f"{min(paired):.2f}–{max(paired):.2f}"
                what, shown = f"{wl} texts/s", (f"{mine:.1f}", f"{theirs:.1f}")
                ok = ratio >= low
            verdict = "yes" if ok else "**no**"
            rows.append(
                f"| {mode} | {what} | {shown[0]} | {shown[1]} | {ratio:.3f} | {spread} "
                f"| {verdict} |"
            )
    if not rows:
        return []

    def short(rev: str | None) -> str | None:
        return rev if rev is None or len(rev) <= 60 else rev[:59] + "…"

    revision = short(meta.get("revision")) or "an unrecorded revision"
    checkout = short(meta.get("checkout")) or "?"
    intro = (
        f"minilm_fast's engines (this Python's wheel; checkout: {checkout}) against the same "
        f"engines with the baseline's wheel ({revision}; `{meta['python']}`), alternating in "
        f"this run. Texts/s: the median over rounds of current ÷ baseline within the round "
        "(both measured minutes apart at most, so the machine's drift between rounds, ±25% on "
        "these VMs, cancels), with the rounds' range. The one-query median: current ÷ baseline "
        f"of the medians. Within {100 * BASELINE_TOLERANCE:.0f}%: texts/s at least {low:.2f}× "
        f"the baseline's, the one-query median at most {high:.2f}×. Same code on both sides "
        "shows the run's noise."
    )
    share = (results.get("noise") or {}).get("share")
    if share is not None and share > 0.05:
        intro += (
            f" **Noisy run**: other processes took {100 * share:.0f}% of the machine's CPU "
            "time while engines were measured; ratios this far from 1 may be noise."
        )
    return [
        "",
        "## Against the baseline",
        "",
        intro,
        "",
        "| compute | workload | current | baseline | current ÷ baseline | range over rounds | "
        f"within {100 * BASELINE_TOLERANCE:.0f}% |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def quality_table(results: dict[str, Any]) -> list[str]:
    """STS-B Spearman and cosine to minilm_fast float32, per engine."""
    quality = results.get("quality") or {}
    scores = quality.get("engines") or {}
    if not scores:
        return []
    ref = quality.get("reference_scores") or {}
    has_gold = bool(quality.get("pairs"))
    reference = quality.get("reference")
    intro = f"Every engine embeds the short texts' whole file ({quality['desc']}), batches of 32."
    if has_gold:
        intro += (
            f" STS-B: Spearman × 100 between the {quality['pairs']} pairs' gold scores and the "
            "cosine of their two vectors."
        )
    if reference:
        intro += (
            f" Cosine to {reference}: each text's vector against minilm_fast float32's for the "
            "same text, mean and min over the texts."
        )
    else:
        intro += " No minilm_fast float32 vectors in this run: no cosine columns."
    lines = [
        "",
        "## Quality",
        "",
        intro,
        "",
        "| engine | precision | STS-B Spearman | vs float32 | cosine to float32: mean | min |",
        "|---|---|---|---|---|---|",
    ]
    for k in results["engines"]:
        q = scores.get(k, {})
        if "spearman" in q:
            rho = f"{q['spearman']:.2f}"
            diff = f"{q['spearman'] - ref['spearman']:+.2f}" if "spearman" in ref else "–"
        else:
            rho = diff = "–"
        if k == "minilm_fast" and reference:
            diff = "(reference)"
        mean = f"{q['mean_cos']:.6f}" if "mean_cos" in q else "–"
        low = f"{q['min_cos']:.6f}" if "min_cos" in q else "–"
        lines.append(
            f"| {_engine_label(results, k)} | {results['engines'][k]['precision']} | {rho} | "
            f"{diff} | {mean} | {low} |"
        )
    if not has_gold:
        lines += ["", "No STS-B gold scores (`--texts stsb_dev.tsv` gives them): no Spearman."]
    return lines


def markdown(results: dict[str, Any], chart: str | None) -> str:
    meta = results["meta"]
    work = results["workloads"]
    keys = list(results["engines"])
    threads = meta["threads"]
    lines = [
        "# minilm_fast side by side with its peers",
        "",
        f"{meta['date']}; {meta['machine']}; Python {meta['python']}; **threads={threads}** for "
        f"every engine; length-sorted batches of {meta['batch_size']}; medians over "
        f"{meta['repeats']} rounds, engines alternating"
        + (" (**quick run**: small samples)" if meta["quick"] else "")
        + ". Generated by",
        "",
        f"    {meta['command']}",
        "",
        "See [COMPARE.md](COMPARE.md) for the method and how each peer is set up.",
        "",
        "## Summary",
        "",
        "| workload | minilm_fast | best fp32 peer | minilm_fast ÷ peer |",
        "|---|---|---|---|",
    ]
    names = {
        "short": (
            f"short texts ({work['short']['desc']}, ~{work['short']['tokens']:.0f} word pieces)"
        ),
        "long": f"long documents ({work['long']['tokens']:.0f} word pieces)",
        "query": f"one query (~{work['query']['tokens']:.0f} word pieces), median latency",
    }
    for wl, mine, peer, theirs in summary_rows(results):
        if wl == "query":
            lines.append(
                f"| {names[wl]} | {mine:.2f} ms | {peer}: {theirs:.2f} ms | "
                f"{theirs / mine:.2f}× faster |"
            )
        else:
            lines.append(
                f"| {names[wl]} | {mine:.1f} texts/s | {peer}: {theirs:.1f} texts/s | "
                f"{mine / theirs:.2f}× |"
            )

    lines += targets(results)
    lines += quantized_targets(results)
    lines += baseline_table(results)
    lines += [
        "",
        "## Engines",
        "",
        "| engine | version | precision | import | load → first embedding | RSS after load |",
        "|---|---|---|---|---|---|",
    ]
    for k in keys:
        e = results["engines"][k]
        precision = e["precision"] + (f" (`compute='{e['compute']}'`)" if e.get("compute") else "")
        lines.append(
            f"| {_engine_label(results, k)} | {_version(results, k)} | {precision} | "
            f"{e['import_s']:.2f} s | {e['load_s']:.2f} s | {e['rss_load_mb']:.0f} MB |"
        )
    lines += quality_table(results)

    for wl in ("short", "long"):
        data = results["throughput"][wl]
        sps = {k: _median(v["sps"]) for k, v in data.items()}
        best = best_fp32_peer(results, sps, higher=True)
        best_value = sps[best] if best else None
        lines += [
            "",
            f"## {_sentence(names[wl])}",
            "",
            f"{work[wl]['texts']} texts per round, one `encode(texts, batch_size="
            f"{meta['batch_size']})`; latency: calls of {meta['batch_size']} texts each "
            f"({len(next(iter(data.values()))['request_ms'])} calls). "
            f"Best fp32 peer: {results['engines'][best]['label'] if best else '–'}.",
            "",
            "| engine | texts/s | tokens/s | vs best fp32 peer | latency p50 / p99 "
            "(32 texts) | peak RSS | CPU / wall |",
            "|---|---|---|---|---|---|---|",
        ]
        for k in sorted(data, key=lambda k: -sps[k]):
            v = data[k]
            ms = v["request_ms"]
            lat = f"{np.percentile(ms, 50):.0f} / {np.percentile(ms, 99):.0f} ms" if ms else "–"
            lines.append(
                f"| {_engine_label(results, k)} | {sps[k]:.1f} | "
                f"{sps[k] * work[wl]['tokens']:,.0f} | {_ratio(sps[k], best_value)} | {lat} | "
                f"{_peak(results, k, wl)} | {_median(v['cpu_use']):.2f} |"
            )

    lat_data = results["latency"]
    p50 = {k: float(np.percentile(v["ms"], 50)) for k, v in lat_data.items()}
    best = best_fp32_peer(results, p50, higher=False)
    n_calls = len(next(iter(lat_data.values()))["ms"]) if lat_data else 0
    lines += [
        "",
        f"## {_sentence(names['query'])}",
        "",
        f'Each engine\'s single-text call (`encode("...")`, or a batch of one), {n_calls} calls '
        "per engine in alternating blocks, end to end (tokenize, forward, pool, normalise); "
        "each block starts on an idle machine with 30 ms of untimed calls. After idle: the "
        "first of those calls (median over blocks). Slow calls: those over 1.5× the engine's "
        "median, and in brackets how many of them came in runs of three or more in a row, "
        "stretches when the whole machine was slower (on these VMs, memory bandwidth shared "
        "with other tenants) rather than hiccups of the engine.",
        "",
        "| engine | p50 | p99 | p99 ÷ p50 | slow calls (in runs) | after idle "
        "| vs best fp32 peer (p50) | peak RSS | CPU / wall |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for k in sorted(lat_data, key=lambda k: p50[k]):
        ms = lat_data[k]["ms"]
        speed = _ratio(p50[best], p50[k]) if best else "–"
        p99 = float(np.percentile(ms, 99))
        slow, in_runs = slow_calls(ms)
        first = lat_data[k].get("first_ms")
        after_idle = f"{_median(first):.2f} ms" if first else "–"
        lines.append(
            f"| {_engine_label(results, k)} | {p50[k]:.2f} ms | {p99:.2f} ms | "
            f"{p99 / p50[k]:.2f} | {slow} ({in_runs}) | {after_idle} | {speed} | "
            f"{_peak(results, k, 'query')} | {_median(lat_data[k]['cpu_use']):.2f} |"
        )

    sweep = results.get("sweep") or {}
    if sweep:
        sizes = list(next(iter(sweep.values())))
        lines += [
            "",
            "## Batch-size sweep (texts/s)",
            "",
            "| text length | engine | " + " | ".join(f"batch {b}" for b in sizes) + " |",
            "|---|---|" + "---|" * len(sizes),
        ]
        for length, cells in sweep.items():
            tokens = work["sweep"][length]["tokens"]
            for k in keys:
                values = " | ".join(f"{_median(cells[b][k]):.1f}" for b in sizes)
                lines.append(f"| {tokens:.0f} pieces | {_engine_label(results, k)} | {values} |")
        if chart:
            lines += ["", f"![texts/s against batch size and text length]({chart})"]

    lines += ["", "## Checks and conditions", ""]
    for k, cos in results["verification"].items():
        shown = ", ".join(f"{ref} {c:.7f}" for ref, c in cos.items())
        if shown:
            lines.append(f"- {results['engines'][k]['label']}: min cosine to {shown} (check texts)")
    t1 = results.get("threads1_cpu_use") or {}
    if t1:
        shown = ", ".join(f"{wl} {v:.2f}" for wl, v in t1.items())
        lines.append(
            f"- minilm_fast with threads=1, CPU time / wall time: {shown} (1.00 = one core)"
        )
    share = results["noise"]["share"]
    if share is not None:
        lines.append(
            f"- other processes used {100 * share:.1f}% of the machine's CPU time while engines "
            "were measured" + (" — **noisy run**" if share > 0.05 else "")
        )
    peers = meta.get("peers")
    if peers:
        stats = peers["steps"]["onnx-optimized"]["fused_operators"]
        fused = ", ".join(f"{op} {n}" for op, n in stats.items() if n)
        lines.append(f"- ONNX graph fused operators (onnxruntime optimizer): {fused}")
        steps = ", ".join(f"{k} {v['seconds']:.1f} s" for k, v in peers["steps"].items())
        lines.append(f"- peer preparation (scripts/prepare_peers.py): {steps}")
    for note in meta.get("notes", []):
        lines.append(f"- {note}")
    lines.append(f"- the whole comparison took {meta['seconds'] / 60:.1f} min")
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = results["sweep"]
    lengths = list(sweep)
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.2 * len(lengths), 3.8), squeeze=False)
    for ax, length in zip(axes[0], lengths):
        cells = sweep[length]
        sizes = [int(b) for b in cells]
        for k, e in results["engines"].items():
            ys = [_median(cells[str(b)][k]) for b in sizes]
            ax.plot(
                sizes,
                ys,
                marker="o",
                linewidth=2.6 if k in MINILM_FAST_COMPUTE else 1.4,
                linestyle=":" if k in BASELINE_OF else "--" if e["precision"] != "fp32" else "-",
                label=e["label"],
            )
        tokens = results["workloads"]["sweep"][length]["tokens"]
        ax.set_title(f"{tokens:.0f} word pieces per text")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.set_xlabel("batch size")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("texts / s")
    axes[0][-1].legend(fontsize=8)
    meta = results["meta"]
    fig.suptitle(f"{meta['machine']}, threads={meta['threads']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_chart_somewhere(json_path: Path, png_path: Path, pythons: list[str]) -> str | None:
    """Draw with the first Python that has matplotlib; None when drawn, else why not."""
    results = json.loads(json_path.read_text(encoding="utf-8"))
    if not results.get("sweep"):
        return "no sweep, no chart"
    return draw_with_first(pythons, ["-m", "peers.report", "chart", str(json_path), str(png_path)])


def draw_with_first(pythons: list[str], args: list[str]) -> str | None:
    """Run `python *args` (in benches/) with each of `pythons` in turn until one succeeds:
    None when one did, else why none could (each one's last line of stderr)."""
    errors = []
    for python in dict.fromkeys(pythons):
        cmd = [python, *args]
        done = subprocess.run(cmd, cwd=BENCHES, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return None
        errors.append(f"{python}: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return "no chart: " + "; ".join(errors)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "chart":
        sys.exit("usage: python -m peers.report chart RESULTS.json OUT.png")
    chart(json.loads(Path(sys.argv[2]).read_text(encoding="utf-8")), Path(sys.argv[3]))
