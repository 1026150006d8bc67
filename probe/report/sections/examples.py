"""Example strips (input / output / true background / removed part) for the simplest and most complex
training sets of each background source, on the first OOD split; each external network's strip sits under
the grid rows of the same source (it is measured on every source of the study: one stored result per source,
picked by its ``eval`` and ``params``). A strip whose images cannot be read is left out and named in the
caption — never drawn as an empty row."""

from __future__ import annotations

from typing import Any

import numpy as np

from probe.analysis.sources import with_source
from probe.report.context import ReportContext, Section, display_names, with_axes, without_axes

KINDS = ["input", "output", "background", "removed"]


def _grid_picks(dec: Any) -> list[tuple[str, str, Any]]:
    """(source, label, row): the fewest- and most-background model of each family × background source."""
    picks = []
    group_keys = [k for k in ("family", "background") if k in dec]
    for keys, group in (dec.groupby(group_keys) if len(dec) and group_keys else []):
        keys = keys if isinstance(keys, tuple) else (keys,)
        models = group.drop_duplicates("model_id").sort_values("n_backgrounds")
        for _, row in (models.iloc[[0, -1]] if len(models) > 1 else models).iterrows():
            label = " / ".join(str(k) for k in keys) + f"\nn={int(row['n_backgrounds'])}"
            picks.append((str(row["source"]), label, row))
    return picks


def _external_picks(external: Any) -> list[tuple[str, str, Any]]:
    """(source, label, row): one strip per external network and evaluation source (stored result)."""
    keys = [k for k in ("model_id", "params", "eval") if k in external]
    return [(str(row["source"]), f"{row['name']}\n(external, {row['source']})", row)
            for _, row in external.drop_duplicates(keys).iterrows()]


def ordered_picks(dec: Any) -> list[tuple[str, Any]]:
    """(label, row) per strip: per source, the grid's rows then the external networks measured on that
    source; external results of sources without grid rows (real pairs) last."""
    dec = with_source(dec)
    ext = without_axes(dec)
    external = dec[ext].assign(name=display_names(dec[ext]))
    grid, others = _grid_picks(dec[with_axes(dec)]), _external_picks(external)
    sources = list(dict.fromkeys(s for s, _, _ in grid))
    ordered = []
    for source in sources:
        ordered += [(label, row) for s, label, row in grid + others if s == source]
    ordered += [(label, row) for s, label, row in others if s not in sources]
    return ordered


def strip_images(ctx: ReportContext, row: Any, split: str) -> tuple[np.ndarray | None, str]:
    """(4 × C × H × W images of ``row``'s stored result on ``split`` — or its last split when it has none
    of that name —, the split drawn) or (None, why it cannot be drawn)."""
    from probe.store import read_array

    try:
        arr = read_array(ctx.store, row["model_id"], "decomposition", "examples", params=row.get("params"),
                         eval_info=row.get("eval"))
    except Exception as exc:  # a broken or missing array: left out and said, never an empty row
        return None, f"{type(exc).__name__}: {str(exc)[:120]}"
    available = list(arr.coords["split"].values) if "split" in arr.coords else []
    if arr.sizes.get("image", 0) == 0 or not available:
        return None, "no example images stored"
    drawn = split if split in available else str(available[-1])
    return arr.sel(split=drawn).isel(image=0).values, drawn


def _draw(axes: Any, images: np.ndarray, first: bool) -> None:
    for j, kind in enumerate(KINDS):
        image = np.moveaxis(images[j], 0, -1)
        if kind == "removed":
            image = np.abs(image).mean(-1)
            image = image / max(image.max(), 1e-6)
            axes[j].imshow(image, cmap="magma", vmin=0, vmax=1)
        else:
            axes[j].imshow(np.clip(image, 0, 1))
        axes[j].set_xticks([])
        axes[j].set_yticks([])
        if first:
            axes[j].set_title(kind if kind != "removed" else "|input − output|")


def examples(ctx: ReportContext) -> Section | None:
    dec = ctx.probe_metrics("decomposition")
    if dec.empty:
        return None
    dec = dec[with_axes(dec) | without_axes(dec)]
    ood = ctx.ood_splits()
    split = ood[0] if ood else "id"
    strips, left_out = [], []
    for label, row in ordered_picks(dec):
        images, why_or_split = strip_images(ctx, row, split)
        if images is None:
            left_out.append(f"{label.replace(chr(10), ' ')} ({why_or_split})")
        else:
            strips.append((label, images, why_or_split))
    if not strips:
        return None if not left_out else Section("Examples", text="No example strip could be drawn: "
                                                 + "; ".join(left_out) + ".")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(strips), 4, figsize=(8, 2.1 * len(strips)), squeeze=False)
    for i, (label, images, _) in enumerate(strips):
        _draw(axes[i], images, i == 0)
        axes[i][0].set_ylabel(label, fontsize=8)
    drawn = list(dict.fromkeys(s for _, _, s in strips))
    where = f"split{'s' if len(drawn) > 1 else ''} " + ", ".join(f"'{s}'" for s in drawn)
    fig.suptitle(f"{ctx.task.task} examples on {where}" if ctx.task.decomposition != "rain" else
                 f"examples on {where}")
    fig.tight_layout()
    caption = ("Fewest vs most training backgrounds per source, each source's rows followed by your networks "
               "(external) measured on that source's images; results on real pairs last, on their own splits "
               "(the last one when they have no split of that name). " + ctx.task.examples)
    if left_out:
        caption += " Left out (no images to draw): " + "; ".join(left_out) + "."
    return Section("Examples", figures=[ctx.save(fig, "examples", "Example strips", caption)])
