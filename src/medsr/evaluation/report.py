"""Reporting for evaluations: protocol header, per-item table, mean ± std with a 95% confidence interval, and
JSON/CSV files written atomically. Shared by ``evaluate``, ``segeval``, ``clip-score`` and the training engine."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

from medsr.io import atomic
from medsr.io.atomic import atomic_path

NOT_AVAILABLE = "n/a"


class Summary(NamedTuple):
    """Mean, sample standard deviation and two-sided 95% t-interval of the mean."""

    mean: float
    std: float
    ci95_low: float
    ci95_high: float


def finite_values(values: Iterable[float | None]) -> list[float]:
    """The values that are numbers and finite (NaN, ±inf and ``None`` dropped)."""
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def summarise(values: Iterable[float | None]) -> Summary:
    """Summary of the finite ``values``: mean, std (ddof 1) and the Student-t 95% confidence interval of the mean.

    Non-finite values are left out (the report states how many); with fewer than two values the std and the
    interval are NaN, with none everything is NaN.
    """
    kept = finite_values(values)
    n = len(kept)
    if n == 0:
        return Summary(math.nan, math.nan, math.nan, math.nan)
    mean = math.fsum(kept) / n
    if n == 1:
        return Summary(mean, math.nan, math.nan, math.nan)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in kept) / (n - 1))
    return Summary(mean, std, *t_interval(mean, std, n))


def t_interval(mean: float, std: float, n: int) -> tuple[float, float]:
    """Two-sided 95% Student-t interval of a mean of ``n`` values with sample std ``std`` (NaN for n < 2)."""
    from scipy import stats

    if n < 2 or not math.isfinite(std):
        return math.nan, math.nan
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return mean - half, mean + half


def mean_half_width(values: Iterable[float | None]) -> tuple[float, float]:
    """Mean of the finite ``values`` and the half-width of its 95% Student-t interval (:func:`summarise`; NaN
    for fewer than two values): the ``mean ± h`` of the benchmarks' tables."""
    s = summarise(values)
    return s.mean, (s.ci95_high - s.ci95_low) / 2


def format_value(value: Any, spec: str = ".4f") -> str:
    """Numbers with format ``spec`` ("inf", "n/a" for NaN/None), sequences joined, other values as text."""
    if value is None:
        return NOT_AVAILABLE
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return NOT_AVAILABLE
        return f"{value:{spec}}" if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={format_value(v, spec)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v, spec) for v in value)
    return str(value)


def summary_cell(record: Mapping[str, Any], key: str, digits: int) -> str:
    """``"mean ± sd [low, high]"`` of ``record[key]``, ``record[key + "_std"]`` and the 95% interval
    ``record[key + "_ci"]`` (n/a where undefined): the one way reports print a :class:`Summary`."""
    spec = f".{digits}f"
    lo, hi = (format_value(v, spec) for v in record[f"{key}_ci"])
    return f"{format_value(record[key], spec)} ± {format_value(record[key + '_std'], spec)} [{lo}, {hi}]"


def protocol_header(protocol: Mapping[str, Any]) -> str:
    """The protocol as aligned ``key: value`` lines under a title; printed before every result."""
    width = max((len(str(k)) for k in protocol), default=0) + 1
    lines = ["protocol"] + [f"  {str(k) + ':':<{width}} {format_value(v, '.6g')}" for k, v in protocol.items()]
    return "\n".join(lines)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table with a header row and left-aligned columns."""
    cells = [list(columns)] + [[format_value(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def summary_record(values: Sequence[float | None]) -> dict[str, Any]:
    """JSON-ready summary of one metric: n, excluded (n/a or infinite), mean, std, ci95."""
    s = summarise(values)
    n = len(finite_values(values))
    return {"n": n, "excluded": len(values) - n, "mean": s.mean, "std": s.std, "ci95": [s.ci95_low, s.ci95_high]}


def format_summary(metrics: Sequence[str], records: Sequence[Mapping[str, Any]]) -> str:
    """One line per metric: ``name  mean ± std  95% CI [low, high]  n=N`` (plus the count left out)."""
    lines = []
    for name in metrics:
        info = summary_record([r.get(name) for r in records])
        mean, std, (low, high) = info["mean"], info["std"], info["ci95"]
        line = (f"{name:<8} {format_value(mean)} ± {format_value(std)}  95% CI [{format_value(low)}, "
                f"{format_value(high)}]  n={info['n']}")
        if info["excluded"]:
            line += f" ({info['excluded']} n/a or infinite, left out)"
        lines.append(line)
    return "\n".join(lines)


def render(protocol: Mapping[str, Any], keys: Sequence[str], metrics: Sequence[str],
           records: Sequence[Mapping[str, Any]], extra: Sequence[str] = ()) -> str:
    """Protocol header, per-item table (``keys``, metrics, then ``extra`` columns; keys and extras missing from a
    record are blank) and the summary lines."""
    rows = [[_text(r.get(k)) for k in keys] + [r.get(m) for m in metrics] + [_text(r.get(e)) for e in extra]
            for r in records]
    table = format_table([*keys, *metrics, *extra], rows)
    return "\n\n".join([protocol_header(protocol), table, format_summary(metrics, records)])


def _text(value: Any) -> Any:
    return "" if value is None else value


def _json_ready(value: Any) -> Any:
    """NaN becomes ``null`` and ±inf the strings ``"inf"``/``"-inf"``, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else format_value(value)
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def report_dict(protocol: Mapping[str, Any], metrics: Sequence[str],
                records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Everything the text report says, as one JSON-ready dictionary."""
    summary = {name: summary_record([r.get(name) for r in records]) for name in metrics}
    return _json_ready({"protocol": dict(protocol), "items": [dict(r) for r in records], "summary": summary})


def write_json(path: str | Path, content: Mapping[str, Any]) -> None:
    """Write ``content`` as indented strict JSON, atomically."""
    atomic.write_json(path, _json_ready(content), allow_nan=False)


def write_csv(path: str | Path, columns: Sequence[str], records: Sequence[Mapping[str, Any]]) -> None:
    """Write one row per record with ``columns`` (full-precision numbers, empty cell for n/a), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for record in records:
            writer.writerow(["" if _is_missing(record.get(c)) else record.get(c) for c in columns])


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
