"""The suite's chart: three panels from ``results/suite.json`` (matplotlib, the ``bench`` extra).

    python -m benchmarks.chart [benchmarks/results/suite.json [benchmarks/results/suite.png]]

1. Client CPU per 1,000 commands, per client, adds and gets (bench_cpu; lower is better).
2. stream() peak RSS of the whole client process vs job size (bench_memory), with the
   120 MB target, and batch()'s peak for comparison.
3. Wall time against the rate-limit bucket's bound, per client (bench_throttle): a bar at the
   bound is a client as fast as the limit allows; an aborted run is hatched and labelled.

Without matplotlib, :func:`render` returns False and nothing is written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLORS = {
    "bitrix_batch": "#2b6cb0",
    "fast-bitrix24": "#dd6b20",
    "b24pysdk": "#38a169",
    "bare httpx baseline": "#718096",
}
THROTTLE_LABELS = {"ours": "bitrix_batch", "fast_bitrix24": "fast-bitrix24", "b24pysdk": "b24pysdk"}


def render(suite: dict[str, Any], path: Path) -> bool:
    """Draw the panels for ``suite`` into ``path``; False if matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.6), layout="constrained")
    _cpu(axes[0], suite.get("cpu"))
    _memory(axes[1], suite.get("memory"))
    _throttle(axes[2], suite.get("throttle"))
    title = f"bitrix_batch benchmark suite ({suite.get('scale', '?')} scale"
    env = suite.get("environment", {})
    if env:
        title += f"; Python {env.get('python')}, {env.get('cpu_count')} CPUs, {env.get('date')}"
    fig.suptitle(title + ")", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _empty(ax: Any, title: str, why: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def _cpu(ax: Any, cpu: dict[str, Any] | None) -> None:
    title = "client CPU per 1,000 commands"
    if not cpu or not cpu.get("clients"):
        _empty(ax, title, "bench_cpu did not run")
        return
    clients = list(cpu["clients"].values())
    width = 0.38
    for k, (workload, shade) in enumerate((("add", 1.0), ("get", 0.55))):
        for i, row in enumerate(clients):
            value = (row.get(workload) or {}).get("cpu_per_1000_s")
            x = i + (k - 0.5) * width
            if value is None:
                ax.text(x, 0, "failed", rotation=90, ha="center", va="bottom", color="red")
                continue
            ax.bar(
                x,
                value,
                width,
                color=COLORS.get(row["label"], "#999"),
                alpha=shade,
                label=f"{workload}s" if i == 0 else None,
                edgecolor="black",
                linewidth=0.4,
            )
            ax.text(x, value, f"{value:.3f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(clients)))
    ax.set_xticklabels(
        [r["label"].replace("bare httpx ", "bare httpx\n") for r in clients], fontsize=8
    )
    ax.set_ylabel("CPU seconds per 1,000 commands (user + sys)")
    ratios = cpu.get("ratios", {})
    notes = []
    for name, short in (("ours/fast_bitrix24", "fast-bitrix24"), ("ours/baseline", "baseline")):
        total = (ratios.get(name) or {}).get("total")
        if total is not None:
            notes.append(f"vs {short}: {total:.2f}x")
    n = cpu.get("commands", 0)
    ax.set_title(
        f"{title}\n{n:,} adds (dark) and {n:,} gets (light); " + ", ".join(notes), fontsize=9
    )
    ax.legend(fontsize=8)


def _memory(ax: Any, memory: dict[str, Any] | None) -> None:
    title = "stream(): peak RSS of the client process"
    stream = [r for r in (memory or {}).get("stream", []) if r.get("peak_rss_mb")]
    if not stream:
        _empty(ax, title, "bench_memory's stream part did not run")
        return
    xs = [r["n"] for r in stream]
    ys = [r["peak_rss_mb"] for r in stream]
    inputs = {r["input"].split(" ")[0] for r in stream}
    ax.plot(xs, ys, "o-", color=COLORS["bitrix_batch"], label=f"stream() from a {'/'.join(inputs)}")
    for x, y in zip(xs, ys, strict=True):
        ax.annotate(
            f"{y:.0f} MB",
            (x, y),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
        )
    batch = (memory or {}).get("batch") or {}
    if batch.get("peak_rss_mb"):
        ax.plot(
            [batch["n"]],
            [batch["peak_rss_mb"]],
            "s",
            color="#c53030",
            label=f"batch() of {batch['n']:,} (keeps every result)",
        )
    ax.axhline(120, color="gray", linestyle="--", linewidth=1, label="target: 120 MB")
    ax.set_xscale("log")
    ax.set_ylim(0, max([120.0, *ys, batch.get("peak_rss_mb") or 0]) * 1.15)
    ax.set_xlabel("commands in the job")
    ax.set_ylabel("peak RSS, MB (VmHWM, whole process)")
    ax.set_title(title + "\nvs job size (adds, emulator in another process)", fontsize=9)
    ax.legend(fontsize=8)


def _throttle(ax: Any, rows: list[dict[str, Any]] | None) -> None:
    title = "wall time vs the rate limit's bound"
    if not rows:
        _empty(ax, title, "bench_throttle did not run")
        return
    bound = max(r["bound_s"] for r in rows)
    for i, r in enumerate(rows):
        label = THROTTLE_LABELS.get(r["client"], r["client"])
        done = r.get("completed")
        ax.bar(
            i,
            r["wall_s"],
            0.6,
            color=COLORS.get(label, "#999"),
            hatch=None if done else "//",
            edgecolor="black",
            linewidth=0.4,
            alpha=1.0 if done else 0.5,
        )
        note = (
            f"{r['wall_s']:.1f} s\n{r['bound_over_wall']:.0%} of bound"
            if done and r.get("bound_over_wall")
            else f"aborted at {r['wall_s']:.1f} s\n{r['leads_stored']:,} stored"
        )
        note += f"\n{r['status_503']} x 503"
        ax.text(i, max(r["wall_s"], bound * 0.02), note, ha="center", va="bottom", fontsize=7)
    ax.axhline(bound, color="black", linestyle="--", linewidth=1, label=f"bound {bound:.2f} s")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([THROTTLE_LABELS.get(r["client"], r["client"]) for r in rows], fontsize=8)
    ax.set_ylabel("wall seconds")
    top = max([bound, *(r["wall_s"] for r in rows)])
    ax.set_ylim(0, top * 1.4 if top else 1)
    n = rows[0].get("commands", 0)
    ax.set_title(f"{title}\n{n:,} adds at the server's leaky bucket", fontsize=9)
    ax.legend(fontsize=8, loc="upper center")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    here = Path(__file__).resolve().parent / "results"
    source = Path(args[0]) if args else here / "suite.json"
    target = Path(args[1]) if len(args) > 1 else source.with_suffix(".png")
    if not render(json.loads(source.read_text()), target):
        print("matplotlib is not installed: no chart (pip install 'bitrix_batch[bench]')")
        return 1
    print(f"chart written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
