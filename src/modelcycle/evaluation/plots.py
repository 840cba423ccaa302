"""The report's plots, as inline SVG drawn from an `EvaluationResult`'s curves.

Each function returns markup for one ``<svg>`` with ``id="plot-NAME"`` and
``data-plot="NAME"``: ``roc``, ``pr``, ``calibration``, ``confusion``, ``importance``,
``residuals``, ``predicted-vs-actual``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

from modelcycle.evaluation.svg import (
    AXIS,
    MUTED,
    Chart,
    color,
    nice_ticks,
    padded_range,
    shorten,
)

UNIT_TICKS = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
#: the confusion matrix shows at most this many classes (the most frequent)
MAX_MATRIX_CLASSES = 30
#: the importance chart shows at most this many features (the most important)
MAX_IMPORTANCE_BARS = 20


def roc_plot(
    roc: Sequence[Mapping[str, Any]], champion: Sequence[Mapping[str, Any]] | None = None
) -> Markup:
    """ROC curves, one per drawn class; for two classes the champion's curve too."""
    chart = _unit_chart("roc", "ROC curve", "False positive rate", "True positive rate")
    chart.line([0, 1], [0, 1], MUTED, label="chance", dashed=True, width=1)
    binary = len(roc) == 1
    for i, curve in enumerate(roc):
        name = f"AUC {curve['auc']:.3f}" if binary else f"{curve['label']} ({curve['auc']:.3f})"
        chart.line(curve["fpr"], curve["tpr"], color(i), label=name, title=_of(curve, binary))
    if binary and champion and len(champion) == 1:
        other = champion[0]
        chart.line(
            other["fpr"], other["tpr"], AXIS, label=f"champion {other['auc']:.3f}", dashed=True
        )
    return chart.render()


def pr_plot(
    pr: Sequence[Mapping[str, Any]], champion: Sequence[Mapping[str, Any]] | None = None
) -> Markup:
    """Precision-recall curves; for two classes the share of positives as the baseline."""
    chart = _unit_chart("pr", "Precision-recall curve", "Recall", "Precision")
    binary = len(pr) == 1
    if binary:
        base = pr[0]["prevalence"]
        chart.line([0, 1], [base, base], MUTED, label=f"random ({base:.2f})", dashed=True, width=1)
    for i, curve in enumerate(pr):
        ap = curve["average_precision"]
        name = f"AP {ap:.3f}" if binary else f"{curve['label']} ({ap:.3f})"
        chart.line(
            curve["recall"], curve["precision"], color(i), label=name, title=_of(curve, binary)
        )
    if binary and champion and len(champion) == 1:
        other = champion[0]
        chart.line(
            other["recall"],
            other["precision"],
            AXIS,
            label=f"champion {other['average_precision']:.3f}",
            dashed=True,
        )
    return chart.render()


def calibration_plot(calibration: Sequence[Mapping[str, Any]]) -> Markup:
    """Reliability diagram: fraction of positives against mean predicted probability."""
    chart = _unit_chart(
        "calibration", "Calibration curve", "Mean predicted probability", "Fraction of positives"
    )
    chart.line([0, 1], [0, 1], MUTED, label="perfectly calibrated", dashed=True, width=1)
    binary = len(calibration) == 1
    for i, curve in enumerate(calibration):
        xs, ys, counts = curve["mean_predicted"], curve["fraction_positive"], curve["count"]
        name = f"class {curve['label']}" if binary else str(curve["label"])
        chart.line(xs, ys, color(i), label=name, title=_of(curve, binary))
        tips = [
            f"{name}: mean predicted {x:.3f}, {y:.1%} positive, {c:,} rows"
            for x, y, c in zip(xs, ys, counts, strict=True)
        ]
        chart.points(xs, ys, color(i), radius=3.5, titles=tips)
    return chart.render()


def confusion_plot(classes: Sequence[Any], matrix: Sequence[Sequence[int]]) -> Markup:
    """Heatmap of the confusion matrix, shaded by each true class's share, with counts."""
    shown = _matrix_classes(matrix)
    k = len(shown)
    names = [str(classes[i]) for i in shown]
    cell = max(12.0, min(90.0, 440.0 / max(k, 1)))
    label_width = min(110, 16 + 7 * max(len(shorten(n, 14)) for n in names))
    rotate = k > 6 or max(len(n) for n in names) > 6
    left, top = label_width + 22, 12
    grid = cell * k
    bottom_space = (0.75 * label_width if rotate else 22) + 30
    width, height = int(left + grid + 16), int(top + grid + bottom_space)
    font = min(12.0, max(8.0, cell * 0.32))
    parts = [
        f'<svg id="plot-confusion" data-plot="confusion" class="plot" role="img"'
        f' aria-label="Confusion matrix" viewBox="0 0 {width} {height}" width="{width}"'
        f' height="{height}" font-size="12">',
        "<title>Confusion matrix</title>",
    ]
    for r, i in enumerate(shown):
        row = matrix[i]
        total = sum(row)
        for c, j in enumerate(shown):
            count = row[j]
            share = count / total if total else 0.0
            x, y = left + c * cell, top + r * cell
            tip = (
                f"true {names[r]}, predicted {names[c]}: {count:,} ({share:.1%} of true {names[r]})"
            )
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell:.1f}" height="{cell:.1f}"'
                f' fill="{_blue(share)}" stroke="#fff"><title>{escape(tip)}</title></rect>'
            )
            if cell >= 18:
                ink = "#fff" if share > 0.55 else "#222"
                parts.append(
                    f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2:.1f}" dy="0.35em"'
                    f' text-anchor="middle" font-size="{font:.1f}" fill="{ink}"'
                    f' pointer-events="none">{_count(count)}</text>'
                )
    for r, name in enumerate(names):
        y = top + (r + 0.5) * cell
        parts.append(
            f'<text x="{left - 6:.1f}" y="{y:.1f}" dy="0.32em" text-anchor="end" fill="{AXIS}">'
            f"{escape(shorten(name, 14))}<title>{escape(name)}</title></text>"
        )
        x = left + (r + 0.5) * cell
        base = top + grid + 14
        turn = f' transform="rotate(-45 {x:.1f} {base:.1f})"' if rotate else ""
        anchor = "end" if rotate else "middle"
        parts.append(
            f'<text x="{x:.1f}" y="{base:.1f}" text-anchor="{anchor}"{turn} fill="{AXIS}">'
            f"{escape(shorten(name, 14))}<title>{escape(name)}</title></text>"
        )
    parts.append(
        f'<text x="{left + grid / 2:.1f}" y="{height - 8}" text-anchor="middle"'
        f' font-weight="600" fill="{AXIS}">Predicted class</text>'
        f'<text transform="translate(14 {top + grid / 2:.1f}) rotate(-90)"'
        f' text-anchor="middle" font-weight="600" fill="{AXIS}">True class</text>'
        "</svg>"
    )
    return Markup("".join(parts))


def matrix_is_cut(matrix: Sequence[Sequence[int]]) -> bool:
    """True if `confusion_plot` leaves classes out."""
    return len(matrix) > MAX_MATRIX_CLASSES


def importance_plot(importance: Sequence[Mapping[str, Any]], metric: str) -> Markup:
    """Horizontal bars of the mean score drop per feature, whiskers at ± one std."""
    rows = list(importance[:MAX_IMPORTANCE_BARS])
    n = len(rows)
    low = min([0.0] + [r["mean"] - r["std"] for r in rows])
    high = max([0.0] + [r["mean"] + r["std"] for r in rows])
    span = (high - low) or 1.0
    x_range = (low - 0.02 * span if low < 0 else 0.0, high + 0.05 * span)
    chart = Chart(
        plot="importance",
        title="Permutation feature importance",
        x_label=f"Drop in {metric} when the feature is shuffled",
        y_label="",
        x_range=x_range,
        y_range=(n - 0.5, -0.5),
        height=int(62 + 24 * n),
        width=560,
        left=180,
        y_ticks=[],
    )
    for i, row in enumerate(rows):
        mean, std = row["mean"], row["std"]
        tip = f"{row['feature']}: {mean:.4g} ± {std:.2g}"
        chart.rect(0.0, i - 0.32, mean, i + 0.32, color(0), title=tip)
        if std > 0:
            chart.line([mean - std, mean + std], [i, i], AXIS, width=1.5)
            for end in (mean - std, mean + std):
                chart.line([end, end], [i - 0.15, i + 0.15], AXIS, width=1.5)
        chart.category(i, str(row["feature"]))
    chart.line([0.0, 0.0], [n - 0.5, -0.5], AXIS, width=1)
    return chart.render()


def residuals_plot(histogram: Mapping[str, Any]) -> Markup:
    """Histogram of residuals (actual − predicted) with a line at zero."""
    edges, counts = histogram["edges"], histogram["counts"]
    top = max(counts) if counts else 1
    chart = Chart(
        plot="residuals",
        title="Residuals histogram",
        x_label="Residual (actual − predicted)",
        y_label="Rows",
        x_range=(edges[0], edges[-1]),
        y_range=(0.0, top * 1.08 or 1.0),
        left=66,
    )
    for lo, hi, count in zip(edges[:-1], edges[1:], counts, strict=True):
        if count:
            chart.rect(lo, 0.0, hi, count, color(0), title=f"{lo:.4g} to {hi:.4g}: {count:,} rows")
    if edges[0] <= 0 <= edges[-1]:
        chart.line([0.0, 0.0], [0.0, top * 1.08], AXIS, dashed=True, width=1)
    return chart.render()


def scatter_plot(sample: Mapping[str, Any]) -> Markup:
    """Predicted against actual values for a sample of rows, with the line y = x."""
    actual, predicted = sample["actual"], sample["predicted"]
    low, high = padded_range(list(actual) + list(predicted))
    ticks = nice_ticks(low, high)
    chart = Chart(
        plot="predicted-vs-actual",
        title="Predicted vs actual",
        x_label="Actual",
        y_label="Predicted",
        x_range=(low, high),
        y_range=(low, high),
        x_ticks=ticks,
        y_ticks=ticks,
        width=420,
        height=380,
        left=66,
    )
    chart.line([low, high], [low, high], MUTED, dashed=True, width=1, title="perfect prediction")
    chart.points(actual, predicted, color(0), radius=2.5, opacity=0.45)
    return chart.render()


def _unit_chart(plot: str, title: str, x_label: str, y_label: str) -> Chart:
    return Chart(
        plot=plot,
        title=title,
        x_label=x_label,
        y_label=y_label,
        x_range=(0.0, 1.0),
        y_range=(0.0, 1.0),
        x_ticks=UNIT_TICKS,
        y_ticks=UNIT_TICKS,
        width=500,
        height=340,
        legend=True,
    )


def _of(curve: Mapping[str, Any], binary: bool) -> str:
    return f"positive class {curve['label']}" if binary else f"class {curve['label']} vs rest"


def _matrix_classes(matrix: Sequence[Sequence[int]]) -> list[int]:
    k = len(matrix)
    if k <= MAX_MATRIX_CLASSES:
        return list(range(k))
    support = sorted(range(k), key=lambda i: -sum(matrix[i]))
    return sorted(support[:MAX_MATRIX_CLASSES])


def _blue(share: float) -> str:
    # from #f7fbff (none of the row) to #08519c (all of it)
    lo, hi = (247, 251, 255), (8, 81, 156)
    r, g, b = (round(a + (z - a) * share) for a, z in zip(lo, hi, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def _count(count: int) -> str:
    if count >= 1_000_000:
        return f"{count / 1_000_000:.1f}M"
    if count >= 10_000:
        return f"{count / 1000:.0f}k"
    return str(count)
