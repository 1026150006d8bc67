"""``generalization``: PSNR and SSIM of the restored output on every declared test split.

::

    from probe.probes.generalization import Generalization
    result = Generalization().run(model, data)      # data: probe.probes.evaldata.eval_data_for_run(run)
    result.arrays["scores"].sel(split="ood", score="psnr").mean()

When the evaluation set carries a code base's metric conventions (``data.info["metric_conventions"]``, from a
BasicSR option file's ``val.metrics``), ``psnr_codebase`` / ``ssim_codebase`` are computed beside probe's own
RGB metrics the way that code base computes them (:mod:`probe.codebase_metrics`: 8-bit, ``crop_border``,
Y channel): the numbers to compare with its paper's table.
"""

from __future__ import annotations

import json

import numpy as np
import torch
import xarray as xr

from probe.codebase_metrics import codebase_scores, metric_conventions
from probe.errors import ConfigError
from probe.metrics import psnr, ssim
from probe.models.anchors import feed
from probe.probes.base import EvalData, Probe, ProbeResult, output_flag, predict


class Generalization(Probe):
    description = "PSNR / SSIM on the ID and OOD test splits (and of the untouched input, for reference)"
    defaults = {"batch_size": 16}

    def validate(self) -> None:
        if not isinstance(self.params["batch_size"], int) or self.params["batch_size"] < 1:
            raise ConfigError(f"generalization: batch_size = {self.params['batch_size']!r} must be an integer >= 1")

    def run(self, model: torch.nn.Module, data: EvalData) -> ProbeResult:
        feed(model, data)  # an oracle anchor needs the clean backgrounds
        result = ProbeResult()
        conventions = metric_conventions(data.info.get("metric_conventions") or {})
        scores = ["psnr", "ssim", "psnr_input", "ssim_input"] + [f"{m}_codebase" for m in conventions]
        splits = list(data.splits)
        n = max(len(b) for b in data.splits.values())  # real folders: splits may differ in size (NaN-padded)
        values = np.full((len(splits), n, len(scores)), np.nan)
        for i, split in enumerate(splits):
            batch = data.splits[split]
            output = predict(model, batch.degraded, self.params["batch_size"])
            flag = output_flag(output)
            output = output.clamp(0, 1)
            per_image = [psnr(output, batch.clean), ssim(output, batch.clean),
                         psnr(batch.degraded, batch.clean), ssim(batch.degraded, batch.clean)]
            for metric, (crop, y_channel) in conventions.items():  # the code base's own PSNR / SSIM
                per_image.append(torch.full((len(batch),), float("nan")) if flag else
                                 codebase_scores(output, batch.clean, crop, y_channel)[metric == "ssim"])
            for j, (name, value) in enumerate(zip(scores, per_image)):
                values[i, :len(batch), j] = value.cpu().numpy()
                model_side = j < 2 or j >= 4
                result.add_metric(split, name, None if flag and model_side else float(value.mean()),
                                  flag=flag if model_side else None)
            result.add_metric(split, "psnr_gain", None if flag else float((per_image[0] - per_image[2]).mean()),
                              flag=flag)
        result.arrays["scores"] = xr.DataArray(
            values, dims=("split", "image", "score"),
            coords={"split": splits, "image": np.arange(n), "score": scores},
            attrs={"description": "per-image quality of the output (and of the degraded input)",
                   **({"codebase_conventions": json.dumps(conventions, sort_keys=True),
                       "codebase_source": str(data.info.get("metric_conventions_from", ""))} if conventions else {})})
        return result
