"""Example strips (input / output / true background / removed part) for the simplest and most complex
training sets of each background source, on the first OOD split."""

from __future__ import annotations

import numpy as np

from probe.report.context import ReportContext, Section


def examples(ctx: ReportContext) -> Section | None:
    from probe.store import read_array

    dec = ctx.probe_metrics("decomposition")
    if dec.empty or "n_backgrounds" not in dec:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ood = ctx.ood_splits()
    split = ood[0] if ood else "id"
    picks = []
    group_keys = [k for k in ("family", "background") if k in dec]
    for keys, group in dec.groupby(group_keys):
        keys = keys if isinstance(keys, tuple) else (keys,)
        models = group.drop_duplicates("model_id").sort_values("n_backgrounds")
        for _, row in (models.iloc[[0, -1]] if len(models) > 1 else models).iterrows():
            picks.append((" / ".join(str(k) for k in keys), row))
    if not picks:
        return None
    kinds = ["input", "output", "background", "removed"]
    fig, axes = plt.subplots(len(picks), 4, figsize=(8, 2.1 * len(picks)), squeeze=False)
    for i, (label, row) in enumerate(picks):
        try:
            arr = read_array(ctx.store, row["model_id"], "decomposition", "examples")
        except Exception:
            continue
        if split not in list(arr.coords["split"].values) or arr.sizes["image"] == 0:
            continue
        images = arr.sel(split=split).isel(image=0).values
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
        axes[i][0].set_ylabel(f"{label}\nn={int(row['n_backgrounds'])}", fontsize=8)
    fig.suptitle(f"examples on split '{split}'")
    fig.tight_layout()
    return Section("Examples", figures=[ctx.save(
        fig, "examples", "Example strips",
        "Fewest vs most training backgrounds per source. A network that learned the content removes the "
        "unseen streaks; one that learned the rain leaves them.")])
