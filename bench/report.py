"""Figures: medians with min/max, ratios, targets, the printed table and the JSON file."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Figure:
    """One measured quantity of one variant, over ``n`` interleaved repetitions."""

    workload: str
    variant: str
    unit: str
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")


@dataclass
class Ratio:
    """cairn against its baseline, with the target it should meet."""

    workload: str
    value: float
    target: str
    met: bool


def format_figure(f: Figure) -> str:
    """One figure as a table line."""
    if not f.samples:
        return (
            f"{f.workload:<34} {f.variant:<14} {'-':>10} {'-':>10} {'-':>10} "
            f"{0:>3}  {f.unit}  {f.note}"
        )
    return (
        f"{f.workload:<34} {f.variant:<14} {f.median:>10.3f} {min(f.samples):>10.3f} "
        f"{max(f.samples):>10.3f} {len(f.samples):>3}  {f.unit}  {f.note}"
    )


HEADER = f"{'workload':<34} {'variant':<14} {'median':>10} {'min':>10} {'max':>10} {'n':>3}  unit"


def print_line(text: str) -> None:
    """Print one line of the benchmark's output at once (figures as they are measured)."""
    print(text, flush=True)  # noqa: T201 - this is the benchmark's output


def print_table(figures: list[Figure], ratios: list[Ratio], header: str) -> str:
    """The table as text (also printed)."""
    lines = [header, "", HEADER]
    lines += [format_figure(f) for f in figures]
    lines += ["", f"{'ratio':<46} {'value':>8}  target            met"]
    for r in ratios:
        lines.append(f"{r.workload:<46} {r.value:>8.3f}  {r.target:<17} {'yes' if r.met else 'NO'}")
    text = "\n".join(lines)
    print_line(text)
    return text


def write_json(
    path: Path, figures: list[Figure], ratios: list[Ratio], meta: dict[str, object]
) -> None:
    """Write every figure (with its median) and ratio as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "meta": meta,
        "figures": [asdict(f) | {"median": f.median} for f in figures],
        "ratios": [asdict(r) for r in ratios],
    }
    path.write_text(json.dumps(data, indent=2))
