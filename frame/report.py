"""A training run as one self-contained HTML page: its config, curves and images.

``write_report(runs, out)`` writes one page for one run folder, or one page comparing
several (their curves overlaid first, then each run on its own). Per run, from the files
train.py wrote (``frame.runs``), in this order:

- the headline: the last sample grid (``samples/step_*.png``: the training images left of the
  chains) and the quality table, every metric with its real-vs-real floor and its ceiling:
  from the newest ``*_eval.json`` of ``frame-eval`` in the run folder, else the last logged
  ``eval/*`` values of ``csv/metrics.csv`` (any ``eval/<name>`` with ``_floor``, ``_ceiling``
  and ``_std`` keys is shown, whatever the metric);
- curves from ``csv/metrics.csv``: ``train/gap_rel`` over all layers and per layer (the
  quantity Algorithm 1 drives to 0), the energies of the observed and synthesized images per
  layer, the ``eval/*`` metrics over the steps, detector firing frequencies, and any other
  logged metric;
- the sample grids over time and the detector maps (``detectors/step_*.png``) where the
  model has learned filters;
- the config, folded: the command-line overrides and ``.hydra/config.yaml``.

Plots are drawn with matplotlib's Agg backend (no display) and every image is embedded as a
base64 PNG; the page loads no script, style sheet, font or image from anywhere, so it opens
offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import MaxNLocator

from frame.eval.names import HIGHER_IS_BETTER, OBJECT_METRICS, TEXTURE_METRICS
from frame.outputs import write_text
from frame.runs import config_text, overrides, read_metrics, step_images

Series = dict[str, list[tuple[int, float]]]

GAP, ENERGY_OBS, ENERGY_SYN, EVAL, DETECTORS = "train/gap_rel", "train/energy_obs", "train/energy_syn", "eval/", "detectors/"
#: eval/<metric>_<suffix> keys drawn with their metric, not as curves of their own
EVAL_SUFFIXES = ("_std", "_floor", "_ceiling", "_low", "_high")
#: panels in the "other metrics" figure, at most
MAX_OTHER = 12

STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
h3 { margin-top: 1.5em; } figure { margin: 1em 0; } figcaption { color: #555; font-size: .9em; }
img { max-width: 100%; image-rendering: pixelated; } pre { background: #f6f6f6; padding: .8em; overflow-x: auto; }
.row { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; } .row figure { margin: 0; }
.muted { color: #777; }
table { border-collapse: collapse; margin: .5em 0; } th, td { padding: .2em .7em; text-align: right; }
th:first-child, td:first-child { text-align: left; } tr { border-bottom: 1px solid #eee; }
.headline { display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start; }
"""


# ---------------------------------------------------------------------------- plotting


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    for text in figure.findobj(Text):  # metric names are shown as written: a "$" is not mathtext
        text.set_parse_math(False)
    FigureCanvasAgg(figure)
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


def _panels(n: int, width: float = 4.2, height: float = 3.0, columns: int = 3) -> tuple[Figure, list]:
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    figure = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return figure, axes[:n]


def _plot(ax, points: list[tuple[int, float]], label: str | None = None, **style) -> None:
    if points:
        steps, values = zip(*points)
        ax.plot(steps, values, label=label, marker="." if len(points) < 30 else None, **style)


def _finish(ax, title: str, log: bool = False, legend: bool = True) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if log:
        ax.set_yscale("log")
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _positive(*series: list[tuple[int, float]]) -> bool:
    values = [v for points in series for _, v in points]
    return bool(values) and min(values) > 0 and max(values) / min(values) > 20


def layers_of(metrics: Series, prefix: str) -> list[str]:
    """The layer names of ``<prefix>/<layer>`` keys, in first-logged order; none for a single
    layer (its curve is the total's)."""
    layers = [key[len(prefix) + 1 :] for key in metrics if key.startswith(prefix + "/")]
    return layers if len(layers) > 1 else []


def total_label(metrics: Series, prefix: str) -> str:
    """``all layers``, or the name of the only layer."""
    layers = [key[len(prefix) + 1 :] for key in metrics if key.startswith(prefix + "/")]
    return layers[0] if len(layers) == 1 else "all layers"


def gap_figure(runs: dict[str, Series]) -> bytes | None:
    """train/gap_rel: one run -> all layers and each layer; several runs -> one line per run and layer."""
    if not any(GAP in metrics for metrics in runs.values()):
        return None
    figure, (ax,) = _panels(1, width=7.5, height=4.0)
    every: list[list[tuple[int, float]]] = []
    for run, metrics in runs.items():
        prefix = f"{run}: " if len(runs) > 1 else ""
        _plot(ax, metrics.get(GAP, []), f"{prefix}{total_label(metrics, GAP)}", linewidth=2.2)
        every.append(metrics.get(GAP, []))
        for layer in layers_of(metrics, GAP):
            _plot(ax, metrics[f"{GAP}/{layer}"], f"{prefix}{layer}", linewidth=1.0)
            every.append(metrics[f"{GAP}/{layer}"])
    ax.set_ylabel("||H_obs - H_syn|| / ||H_obs||")
    _finish(ax, "gap_rel: observed vs synthesized filter statistics", log=_positive(*every))
    return png_bytes(figure)


def energy_figure(runs: dict[str, Series]) -> bytes | None:
    """Energies of the observed (solid) and synthesized (dashed) images: all layers, then each layer."""
    groups: list[str] = []
    for metrics in runs.values():
        if ENERGY_OBS in metrics and "" not in groups:
            groups.append("")
        groups += [layer for layer in layers_of(metrics, ENERGY_OBS) if layer not in groups]
    single = total_label(next(iter(runs.values())), ENERGY_OBS) if len(runs) == 1 else "all layers"
    if not groups:
        return None
    figure, axes = _panels(len(groups))
    for ax, layer in zip(axes, groups):
        suffix = f"/{layer}" if layer else ""
        for index, (run, metrics) in enumerate(runs.items()):
            colour = f"C{index}"
            prefix = f"{run}: " if len(runs) > 1 else ""
            _plot(ax, metrics.get(ENERGY_OBS + suffix, []), f"{prefix}observed", color=colour)
            _plot(ax, metrics.get(ENERGY_SYN + suffix, []), f"{prefix}synthesized", color=colour, linestyle="--")
        _finish(ax, f"energy f(I; w), {layer or single}", legend=ax is axes[0])
    return png_bytes(figure)


def eval_names(metrics: Series) -> list[str]:
    """The eval/<metric> names, in frame.eval's order (``eval/kid_std`` and the interval ``eval/c2st_acc_low``,
    ``_high`` go with their metric; ``eval/pixel_std`` is a metric of its own)."""
    names = [key[len(EVAL) :] for key in metrics if key.startswith(EVAL)]
    names = [name for name in names if not any(name.endswith(s) and name[: -len(s)] in names for s in EVAL_SUFFIXES)]
    order: dict[str, int] = {}
    for name in OBJECT_METRICS + TEXTURE_METRICS:  # a name of both kinds keeps its place among the objects'
        order.setdefault(name, len(order))
    return sorted(names, key=lambda name: (order.get(name, len(order)), name))


def eval_figure(runs: dict[str, Series]) -> bytes | None:
    """eval/<metric> per panel, +- its std, with the floor (real images) and ceiling (noise) dotted."""
    names: list[str] = []
    for metrics in runs.values():
        names += [name for name in eval_names(metrics) if name not in names]
    if not names:
        return None
    figure, axes = _panels(len(names))
    for ax, name in zip(axes, names):
        labelled: set[str] = set()
        for index, (run, metrics) in enumerate(runs.items()):
            colour = f"C{index}"
            points = metrics.get(EVAL + name, [])
            _plot(ax, points, run if len(runs) > 1 else "samples", color=colour)
            std = dict(metrics.get(f"{EVAL}{name}_std", []))
            if std and points:
                steps = [s for s, _ in points]
                ax.fill_between(steps, [v - std.get(s, 0) for s, v in points], [v + std.get(s, 0) for s, v in points],
                                color=colour, alpha=0.2)
            for suffix, style in (("_floor", ":"), ("_ceiling", "-.")):
                bound = metrics.get(EVAL + name + suffix)
                if bound:
                    label = None if suffix in labelled else "real (floor)" if suffix == "_floor" else "noise (ceiling)"
                    labelled.add(suffix)
                    ax.axhline(bound[-1][1], color="grey" if len(runs) == 1 else colour, linestyle=style, linewidth=1,
                               label=label)
        _finish(ax, f"eval/{name}", legend=ax is axes[0])
    return png_bytes(figure)


def detector_figure(runs: dict[str, Series]) -> bytes | None:
    """How often each learned filter fires on the training images (solid) and on the chains (dashed)."""
    if len(runs) != 1:
        return None
    (metrics,) = runs.values()
    filters = sorted({key.rsplit("/", 1)[-1] for key in metrics if key.startswith(f"{DETECTORS}freq_obs/")})
    if not filters and f"{DETECTORS}freq_obs" not in metrics:
        return None
    figure, (ax,) = _panels(1, width=7.5, height=4.0)
    for index, name in enumerate(filters):
        colour = f"C{index % 10}"
        _plot(ax, metrics.get(f"{DETECTORS}freq_obs/{name}", []), None, color=colour, linewidth=0.8, alpha=0.6)
        _plot(ax, metrics.get(f"{DETECTORS}freq_syn/{name}", []), None, color=colour, linewidth=0.8, alpha=0.6,
              linestyle="--")
    _plot(ax, metrics.get(f"{DETECTORS}freq_obs", []), "all filters, training images", color="black", linewidth=2.2)
    _plot(ax, metrics.get(f"{DETECTORS}freq_syn", []), "all filters, chains", color="black", linewidth=2.2, linestyle="--")
    _finish(ax, f"detector firing frequency, {len(filters)} filters: training images (solid), chains (dashed)")
    return png_bytes(figure)


def other_keys(metrics: Series) -> list[str]:
    known = (GAP, ENERGY_OBS, ENERGY_SYN, EVAL, DETECTORS)
    return [key for key in metrics if not key.startswith(known)][:MAX_OTHER]


def other_figure(runs: dict[str, Series]) -> bytes | None:
    keys: list[str] = []
    for metrics in runs.values():
        keys += [key for key in other_keys(metrics) if key not in keys]
    keys = keys[:MAX_OTHER]
    if not keys:
        return None
    figure, axes = _panels(len(keys))
    for ax, key in zip(axes, keys):
        for index, (run, metrics) in enumerate(runs.items()):
            _plot(ax, metrics.get(key, []), run if len(runs) > 1 else None, color=f"C{index}")
        _finish(ax, key)
    return png_bytes(figure)


# ---------------------------------------------------------------------------- HTML


def img(data: bytes, alt: str, css_class: str = "") -> str:
    """An <img> holding ``data`` (PNG bytes) as a base64 data URI."""
    encoded = base64.b64encode(data).decode("ascii")
    extra = f' class="{css_class}"' if css_class else ""
    return f'<img{extra} alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def figure_html(data: bytes | None, figure_id: str, caption: str) -> str:
    if data is None:
        return ""
    return f'<figure id="{figure_id}">{img(data, caption)}<figcaption>{html.escape(caption)}</figcaption></figure>'


def spread(items: Sequence, at_most: int) -> list:
    """At most ``at_most`` items, evenly spaced, always the first and the last."""
    if len(items) <= at_most:
        return list(items)
    if at_most == 1:
        return [items[-1]]
    picks = sorted({round(i * (len(items) - 1) / (at_most - 1)) for i in range(at_most)})
    return [items[i] for i in picks]


def last_image_html(found: list[tuple[int, Path]], figure_id: str, what: str) -> str:
    """The last image, large."""
    if not found:
        return ""
    step, last = found[-1]
    return (f'<figure id="{figure_id}-final">{img(last.read_bytes(), f"{what}, step {step}")}'
            f"<figcaption>{html.escape(what)}, step {step} (the last)</figcaption></figure>")


def over_time_html(found: list[tuple[int, Path]], figure_id: str, what: str, max_images: int) -> str:
    """Up to ``max_images`` images, evenly spread over the run."""
    if len(found) < 2:
        return ""
    shown = spread(found, max_images)
    cells = "".join(
        f'<figure>{img(path.read_bytes(), f"{what}, step {s}")}<figcaption>step {s}</figcaption></figure>'
        for s, path in shown
    )
    more = f" ({len(shown)} of {len(found)})" if len(shown) < len(found) else ""
    return f'<h4>Over time{more}</h4><div class="row" id="{figure_id}-over-time">{cells}</div>'


def quality_rows(run: Path, metrics: Series) -> tuple[list[dict[str, Any]], str]:
    """The quality table of a run, one dict per metric (value, std, floor, ceiling, position,
    better), and where it comes from: the newest frame-eval JSON, else metrics.csv."""
    files = sorted(run.glob("**/*_eval.json"), key=lambda path: path.stat().st_mtime)
    for path in reversed(files):
        try:
            found = json.loads(path.read_text())["metrics"]
            rows = [{"name": str(name), **{key: entry.get(key) for key in ("value", "std", "floor", "ceiling", "better", "interval")}}
                    for name, entry in found.items() if isinstance(entry, dict)]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # a file from elsewhere that is not frame-eval's: the next one, or metrics.csv
        return rows, f"frame-eval, {path.relative_to(run)}"
    rows = []
    for name in eval_names(metrics):
        last = {suffix: metrics[EVAL + name + suffix][-1][1] for suffix in ("", *EVAL_SUFFIXES) if metrics.get(EVAL + name + suffix)}
        interval = [last["_low"], last["_high"]] if "_low" in last and "_high" in last else None
        rows.append({"name": name, "value": last.get(""), "std": last.get("_std"), "floor": last.get("_floor"),
                     "ceiling": last.get("_ceiling"), "better": "higher" if name in HIGHER_IS_BETTER else "lower",
                     "interval": interval})
    step = max((metrics[EVAL + row["name"]][-1][0] for row in rows if metrics.get(EVAL + row["name"])), default=0)
    return rows, f"csv/metrics.csv, step {step}"


def _cell(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, (int, float)) and math.isfinite(x) else "–"


def quality_html(rows: list[dict[str, Any]], source: str, table_id: str) -> str:
    """The quality table: metric, value (+- std, or [its 95% interval]), floor, ceiling, position between them."""
    if not rows:
        return ('<p class="muted">no quality metrics: run <code>frame-eval --ckpt &lt;run&gt;/checkpoints/last.ckpt</code>, '
                "or train with callbacks.eval_metrics on</p>")
    body = []
    for row in rows:
        value, floor, ceiling, std = (row.get(key) for key in ("value", "floor", "ceiling", "std"))
        numbers = all(isinstance(x, (int, float)) and math.isfinite(x) for x in (value, floor, ceiling))
        position = (value - floor) / (ceiling - floor) if numbers and ceiling != floor else None
        spread_ = f" ± {_cell(std)}" if isinstance(std, (int, float)) and math.isfinite(std) else ""
        interval = row.get("interval")
        if isinstance(interval, list) and len(interval) == 2 and all(isinstance(x, (int, float)) for x in interval):
            spread_ += f" [{interval[0]:.2f}, {interval[1]:.2f}]"
        body.append(f"<tr><td>{html.escape(row['name'])}</td><td>{_cell(value)}{spread_}</td><td>{_cell(floor)}</td>"
                    f"<td>{_cell(ceiling)}</td><td>{_cell(position)}</td><td>{html.escape(str(row.get('better') or ''))}</td></tr>")
    return (f'<table id="{table_id}"><caption class="muted">{html.escape(source)}; position 0 = as good as real images '
            "(floor), 1 = as bad as the ceiling (noise); VGG-16 feature distances, not Inception FID</caption>"
            "<tr><th>metric</th><th>value</th><th>floor (real)</th><th>ceiling</th><th>position</th><th>better</th></tr>"
            f"{''.join(body)}</table>")


def run_section(run: Path, label: str, index: int, max_images: int) -> str:
    metrics = read_metrics(run)
    one = {label: metrics}
    key = f"run{index}"
    parts = [f'<section id="{key}"><h2>{html.escape(label)}</h2><p class="muted">{html.escape(str(run.resolve()))}</p>']
    given = overrides(run)
    parts.append(f"<p>overrides: <code>{html.escape(' '.join(given))}</code></p>" if given else "<p>overrides: none</p>")

    samples = step_images(run, "samples")
    rows, source = quality_rows(run, metrics)
    parts.append(f'<div class="headline" id="{key}-headline">')
    parts.append(last_image_html(samples, f"{key}-samples", "training images (left) | samples (right)")
                 or '<p class="muted">no samples/step_*.png</p>')
    parts.append(f"<div><h3>Quality</h3>{quality_html(rows, source, f'{key}-quality')}</div></div>")

    parts.append("<h3>Curves</h3>")
    if not metrics:
        parts.append('<p class="muted">no csv/metrics.csv (a run with logger=none, or one that wrote nothing yet)</p>')
    parts += [
        figure_html(gap_figure(one), f"{key}-gap", "gap_rel per layer (Algorithm 1 drives it to 0)"),
        figure_html(energy_figure(one), f"{key}-energy", "energies of the training images (solid) and the chains (dashed)"),
        figure_html(eval_figure(one), f"{key}-eval",
                    "sample quality (frame.eval; VGG-16 feature distances, not Inception FID) between the floor "
                    "(real images vs real images) and the ceiling (noise)"),
        figure_html(detector_figure(one), f"{key}-detector-freq", "detector firing frequencies"),
        figure_html(other_figure(one), f"{key}-other", "other logged metrics"),
    ]

    if len(samples) > 1:
        parts.append("<h3>Samples over the run: training images (left) next to the chains (right)</h3>")
        parts.append(over_time_html(samples, f"{key}-samples", "training images | chains", max_images))
    detectors = step_images(run, "detectors")
    if detectors:
        parts.append("<h3>Detector maps</h3>")
        parts.append(last_image_html(detectors, f"{key}-detectors", "detector maps"))
        parts.append(over_time_html(detectors, f"{key}-detectors", "detector maps", max_images))

    text = config_text(run)
    parts.append(f'<h3>Config</h3><details><summary>.hydra/config.yaml</summary><pre id="{key}-config">{html.escape(text)}</pre>'
                 "</details>" if text is not None else '<h3>Config</h3><p class="muted">no .hydra/config.yaml</p>')
    parts.append("</section>")
    return "".join(parts)


def labels(runs: Sequence[Path]) -> list[str]:
    """Short distinct names: the folder names, or paths below their common folder when those repeat."""
    names = [run.resolve().name for run in runs]
    if len(set(names)) == len(names):
        return names
    common = Path(os.path.commonpath([run.resolve() for run in runs]))
    return [str(run.resolve().relative_to(common)) or run.resolve().name for run in runs]


def build_report(runs: Sequence[Path], max_images: int = 8) -> str:
    """The HTML page of ``runs`` (see the module docstring)."""
    if not runs:
        raise ValueError("no run folders to report")
    names = labels(runs)
    title = f"frame run {names[0]}" if len(runs) == 1 else f"frame: {len(runs)} runs compared"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='muted'>written {datetime.now():%Y-%m-%d %H:%M} by frame-report</p>",
    ]
    if len(runs) > 1:
        together = {name: read_metrics(run) for name, run in zip(names, runs)}
        parts.append("<section id='compare'><h2>Compared</h2><ul>")
        parts += [f"<li><a href='#run{i}'>{html.escape(name)}</a></li>" for i, name in enumerate(names)]
        parts.append("</ul>")
        parts += [
            figure_html(gap_figure(together), "compare-gap", "gap_rel, every run"),
            figure_html(energy_figure(together), "compare-energy", "energies, every run (observed solid, synthesized dashed)"),
            figure_html(eval_figure(together), "compare-eval", "sample quality, every run"),
            figure_html(other_figure(together), "compare-other", "other logged metrics, every run"),
            "</section>",
        ]
    parts += [run_section(run, name, index, max_images) for index, (run, name) in enumerate(zip(runs, names))]
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(runs: Sequence[Path], out: Path, max_images: int = 8) -> Path:
    """Writes :func:`build_report` to ``out`` (its folder created) and returns ``out``."""
    page = build_report(runs, max_images)
    return write_text(out, page, reads=list(runs))
