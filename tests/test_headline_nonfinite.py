"""A model whose metric rows are NaN (flagged non-finite by its probe) is left out of the headline statistics
instead of stopping the section."""

from __future__ import annotations

import numpy as np
import pandas as pd

from probe.report.sections.headline import headline_numbers


def _metrics(broken: bool) -> pd.DataFrame:
    rows = []
    for seed in range(3):
        for n in (1, 4, 16, 64):
            model = f"n{n}_s{seed}"
            removal = 0.6 - 0.1 * np.log2(n) + 0.01 * seed
            if broken and model == "n16_s1":
                removal = np.nan
            for split, metric, value in (("ood", "removal_ratio", removal), ("id", "psnr_bg_region", 25 + n / 10)):
                rows.append({"model_id": model, "probe": "decomposition", "split": split, "metric": metric,
                             "value": value, "n_backgrounds": n, "background": "natural", "family": "resnet"})
    return pd.DataFrame(rows)


def test_nan_model_is_left_out_not_fatal():
    clean = headline_numbers(_metrics(False), n_boot=200, n_perm=99)
    broken = headline_numbers(_metrics(True), n_boot=200, n_perm=99)
    assert clean["n_models"].tolist() == [12] and broken["n_models"].tolist() == [11]
    rho = [c for c in broken.columns if "spearman" in c and "ood" in c and not c.endswith(("low", "high", "p"))]
    assert rho and (broken[rho[0]] < -0.9).all()
