"""``decomposition``: the papers' decoupled metrics — rain removal vs background reconstruction.

For O = clip(B + βR), output Ŷ and rain mask M (binarised R > 50/255, or soft M = R):

* ``mse_rain`` = Σ (Ŷ − B)² M / Σ M — rain left where rain was (high on OOD rain = generalization failure);
* ``mse_bg`` = Σ (Ŷ − B)² (1 − M) / Σ (1 − M) — damage to the content;
* their relative forms (``rain_over_bg``, each over the whole-image MSE) and the removal ratio
  1 − ‖(Ŷ − B)M‖ / ‖(O − B)M‖ (1 = all rain removed, 0 = untouched);
* residual vs content: the removed part P = O − Ŷ correlated with the true layer D and with B, and P's energy
  where there is no rain (``content_damage``);
* the same network on clean inputs (split ``clean``): a network that learned content leaves them alone;
* for a split whose degradation declares a content decomposition (``noise``, ``blur``:
  :mod:`probe.probes.decompositions`), its quantities too (rows carry ``decomposition = <name>``; array
  ``per_image_content``). Rain splits get exactly the rows above.

::

    from probe.probes.decomposition import Decomposition
    result = Decomposition().run(model, data)
    [m for m in result.metrics if m["split"] == "ood" and m["metric"] == "removal_ratio"]
"""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from probe.errors import ConfigError
from probe.metrics import correlation, mse, mse_background, mse_rain, psnr, removal_ratio
from probe.models.anchors import feed
from probe.probes.base import EvalData, Probe, ProbeResult, output_flag, predict

QUANTITIES = [
    "mse_rain", "mse_bg", "mse_rain_soft", "mse_bg_soft", "mse", "mse_rain_input", "rain_over_bg",
    "rain_over_total", "bg_over_total", "removal_ratio", "removal_ratio_soft", "corr_removed_layer",
    "corr_removed_background", "content_damage", "removed_energy_rain", "psnr_bg_region",
]


def decoupled(output: torch.Tensor, degraded: torch.Tensor, clean: torch.Tensor, layer: torch.Tensor,
              mask: torch.Tensor, soft_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every decoupled quantity, one value per image (float64)."""
    removed = degraded.double() - output.double()
    q: dict[str, torch.Tensor] = {
        "mse_rain": mse_rain(output, clean, mask),
        "mse_bg": mse_background(output, clean, mask),
        "mse_rain_soft": mse_rain(output, clean, soft_mask),
        "mse_bg_soft": mse_background(output, clean, soft_mask),
        "mse": mse(output, clean),
        "mse_rain_input": mse_rain(degraded, clean, mask),
        "removal_ratio": removal_ratio(output, degraded, clean, mask),
        "removal_ratio_soft": removal_ratio(output, degraded, clean, soft_mask),
        "corr_removed_layer": correlation(removed, layer),
        "corr_removed_background": correlation(removed, clean),
    }
    eps = 1e-12
    q["rain_over_bg"] = q["mse_rain"] / q["mse_bg"].clamp_min(eps)
    q["rain_over_total"] = q["mse_rain"] / q["mse"].clamp_min(eps)
    q["bg_over_total"] = q["mse_bg"] / q["mse"].clamp_min(eps)
    energy = (removed**2).mean(1, keepdim=True)
    m = mask.double()
    q["content_damage"] = (energy * (1 - m)).flatten(1).sum(1) / (1 - m).flatten(1).sum(1).clamp_min(eps)
    q["removed_energy_rain"] = (energy * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(eps)
    q["psnr_bg_region"] = 10 * torch.log10(1 / q["mse_bg"].clamp_min(1e-10))
    return q


def _nanmean(values: np.ndarray) -> float:
    """Mean over images, ignoring undefined ones (e.g. an image with no rain); NaN if none is defined."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


class Decomposition(Probe):
    description = "rain-removal vs background-reconstruction errors, removal ratio, residual-vs-content"
    defaults = {"batch_size": 16, "n_examples": 3}

    def validate(self) -> None:
        for key, low in (("batch_size", 1), ("n_examples", 0)):
            value = self.params[key]
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"decomposition: {key} = {value!r} must be an integer >= {low}")

    def run(self, model: torch.nn.Module, data: EvalData) -> ProbeResult:
        feed(model, data)  # an oracle anchor needs the clean backgrounds
        result = ProbeResult()
        splits = list(data.splits)
        n = max(len(b) for b in data.splits.values())  # real folders: splits may differ in size (NaN-padded)
        values = np.full((len(splits), n, len(QUANTITIES)), np.nan)
        k = min([self.params["n_examples"]] + [len(b) for b in data.splits.values()])
        examples = np.zeros((len(splits), k, 4, 3, *data.clean.shape[-2:]), dtype=np.float32)
        contents: dict[str, dict[str, np.ndarray]] = {}
        for i, split in enumerate(splits):
            batch = data.splits[split]
            output = predict(model, batch.degraded, self.params["batch_size"])
            flag = output_flag(output)  # a broken image must not vanish into the mean over the others
            output = output.clamp(0, 1)
            q = decoupled(output, batch.degraded, batch.clean, batch.layer, batch.mask, batch.soft_mask)
            for j, name in enumerate(QUANTITIES):
                values[i, :len(batch), j] = q[name].cpu().numpy()
                mean = _nanmean(values[i, :, j])
                result.add_metric(split, name, None if flag else mean,
                                  flag=flag or (None if np.isfinite(mean) else "undefined for every image"))
            self._content(result, contents, split, data.degradations.get(split), output, batch, flag)
            if k:
                stack = [batch.degraded[:k], output[:k], batch.clean[:k], (batch.degraded[:k] - output[:k])]
                examples[i] = torch.stack(stack, 1).cpu().numpy()
        clean = data.clean
        restored = predict(model, clean, self.params["batch_size"])
        flag = output_flag(restored)
        restored = restored.clamp(0, 1)
        result.add_metric("clean", "psnr", float(psnr(restored, clean).mean()), flag=flag)
        result.add_metric("clean", "removed_energy", float(((clean - restored) ** 2).flatten(1).mean(1).mean()),
                          flag=flag)
        result.arrays["per_image"] = xr.DataArray(
            values, dims=("split", "image", "quantity"),
            coords={"split": splits, "image": np.arange(n), "quantity": QUANTITIES},
            attrs={"description": "decoupled metrics per image"})
        result.arrays["examples"] = xr.DataArray(
            examples, dims=("split", "image", "kind", "channel", "y", "x"),
            coords={"split": splits, "image": np.arange(k), "kind": ["input", "output", "background", "removed"],
                    "channel": ["r", "g", "b"]},
            attrs={"description": "example strips; 'removed' = input - output (may be negative)"})
        if contents:
            result.arrays["per_image_content"] = content_array(contents, splits, n)
        return result

    @staticmethod
    def _content(result: ProbeResult, contents: dict, split: str, degradation, output: torch.Tensor,
                 batch, flag: str | None) -> None:
        """Add the content decomposition of ``split`` (none for rain) as metric rows and per-image values."""
        from probe.probes.decompositions import content_quantities, decomposition_of

        name = decomposition_of(degradation)
        q = content_quantities(name, output, batch.degraded, batch.clean)
        if not q:
            return
        contents[split] = {}
        for quantity, value in q.items():
            per_image = value.cpu().numpy()
            contents[split][quantity] = per_image
            mean = _nanmean(per_image)
            result.add_metric(split, quantity, None if flag else mean, decomposition=name,
                              flag=flag or (None if np.isfinite(mean) else "undefined for every image"))


def content_array(contents: dict[str, dict[str, np.ndarray]], splits: list[str], n: int) -> xr.DataArray:
    """(split, image, quantity) per-image values of the content decompositions (NaN where not computed)."""
    quantities = sorted({q for values in contents.values() for q in values})
    out = np.full((len(splits), n, len(quantities)), np.nan)
    for i, split in enumerate(splits):
        for j, quantity in enumerate(quantities):
            values = contents.get(split, {}).get(quantity)
            if values is not None:
                out[i, :len(values), j] = values
    return xr.DataArray(out, dims=("split", "image", "quantity"),
                        coords={"split": splits, "image": np.arange(n), "quantity": quantities},
                        attrs={"description": "content decomposition per image (noise / blur studies)"})
