"""Example strips (input / output / true background / removed part) for the simplest and most complex
training sets of each background source, on the first OOD split."""

from __future__ import annotations

import numpy as np

from probe.report.context import ReportContext, Section, display_names, with_axes, without_axes


def examples(ctx: ReportContext) -> Section | None:
    from probe.store import read_array

    dec = ctx.probe_metrics("decomposition")
    if dec.empty:
        return None
    ext = without_axes(dec)
    external, dec = dec[ext].assign(name=display_names(dec[ext])), dec[with_axes(dec)]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ood = ctx.ood_splits()
    split = ood[0] if ood else "id"
    picks = []
    group_keys = [k for k in ("family", "background") if k in dec]
    for keys, group in (dec.groupby(group_keys) if len(dec) and group_keys else []):
        keys = keys if isinstance(keys, tuple) else (keys,)
        models = group.drop_duplicates("model_id").sort_values("n_backgrounds")
        for _, row in (models.iloc[[0, -1]] if len(models) > 1 else models).iterrows():
            picks.append((" / ".join(str(k) for k in keys) + f"\nn={int(row['n_backgrounds'])}", row))
    for _, row in external.drop_duplicates("model_id").iterrows():  # your networks: one row each
        picks.append((f"{row['name']}\n(external)", row))
    if not picks:
        return None
    kinds = ["input", "output", "background", "removed"]
    fig, axes = plt.subplots(len(picks), 4, figsize=(8, 2.1 * len(picks)), squeeze=False)
    for i, (label, row) in enumerate(picks):
        try:
            arr = read_array(ctx.store, row["model_id"], "decomposition", "examples")
        except Exception:
            continue
        available = list(arr.coords["split"].values)
        if arr.sizes["image"] == 0 or not available:
            continue
        images = arr.sel(split=split if split in available else available[-1]).isel(image=0).values
        for j, kind in enumerate(kinds):
            image = np.moveaxis(images[j], 0, -1)
            if kind == "removed":
                image = np.abs(image).mean(-1)
                image = image / max(image.max(), 1e-6)
                axes[i][j].imshow(image, cmap="magma", vmin=0, vmax=1)
            else:
                axes[i][j].imshow(np.clip(image, 0, 1))
            axes[i][j].set_xticks([])
            axes[i][j].set_yticks([])
            if i == 0:
                axes[i][j].set_title(kind if kind != "removed" else "|input − output|")
        axes[i][0].set_ylabel(label, fontsize=8)
    fig.suptitle(f"{ctx.task.task} examples on split '{split}'" if ctx.task.decomposition != "rain" else
                 f"examples on split '{split}'")
    fig.tight_layout()
    return Section("Examples", figures=[ctx.save(
        fig, "examples", "Example strips",
        "Fewest vs most training backgrounds per source; your networks (external) below, on their own "
        "splits (the last one when they have no split of that name). " + ctx.task.examples)])
