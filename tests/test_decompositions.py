"""The noise and blur content decompositions measure what they claim: on reference networks of known
behaviour (identity, oracle, a smoothing network, an extra-blurring network) and against independent
implementations (scipy.ndimage, skimage.filters, numpy.fft)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from probe.data.backgrounds import make_background
from probe.data.degradations import make_degradation
from probe.probes.decompositions import content_quantities, decomposition_of, quantity_names
from probe.probes.decompositions.common import band_errors, gaussian_lowpass, local_std, luminance, sobel_magnitude


@pytest.fixture(scope="module")
def natural():
    return make_background("natural", patch=48, seed=0).images(8)[..., :48, :48].double()


def _smooth(x, sigma=1.5):
    return gaussian_lowpass(x, sigma)


def test_registry_declares_the_decomposition_of_every_degradation():
    kinds = {"rain": "rain", "rain_particles": "rain", "noise": "noise", "noise_correlated": "noise",
             "blur": "blur", "defocus": "blur"}
    for name, expected in kinds.items():
        assert decomposition_of(make_degradation({"type": name})) == expected
    assert quantity_names("rain") == [] and "detail_kept_textured" in quantity_names("noise")


def test_helpers_match_independent_references(natural):
    y = luminance(natural)
    ref_y = 0.299 * natural[:, 0] + 0.587 * natural[:, 1] + 0.114 * natural[:, 2]
    assert torch.allclose(y[:, 0], ref_y)
    a = y[0, 0].numpy()
    ref_std = ndi.generic_filter(a, np.std, size=5, mode="mirror")
    assert np.allclose(local_std(y)[0, 0].numpy(), ref_std, atol=1e-7)
    from skimage.filters import sobel

    assert np.allclose(sobel_magnitude(y)[0, 0].numpy(), sobel(a), atol=1e-10)
    x = natural[:1]
    ref_low = np.stack([ndi.gaussian_filter(x[0, c].numpy(), 1.0, mode="mirror", truncate=3.0) for c in range(3)])
    assert np.allclose(gaussian_lowpass(x, 1.0)[0].numpy(), ref_low, atol=1e-10)
    e = torch.randn(2, 3, 20, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    bands = band_errors(e)
    assert torch.allclose(sum(bands.values()), (e**2).mean((1, 2, 3)))  # Parseval: the bands partition the MSE
    spec = np.abs(np.fft.fft2(e[0, 1].numpy())) ** 2 / (20 * 24)  # independent: numpy, one channel
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(20), np.fft.fftfreq(24), indexing="ij"))
    one = band_errors(e[:1, 1:2])
    assert np.isclose(float(one["low"][0]), spec[f < 0.125].sum() / (20 * 24))
    assert np.isclose(float(one["high"][0]), spec[f >= 0.25].sum() / (20 * 24))


def test_noise_decomposition_on_reference_networks(natural):
    batch = make_degradation({"type": "noise", "sigma": 25}).apply(natural.float(), torch.Generator().manual_seed(1))
    o, b = batch.degraded.double(), batch.clean.double()
    ident = content_quantities("noise", o, o, b)
    oracle = content_quantities("noise", b, o, b)
    smooth = content_quantities("noise", _smooth(o), o, b)
    assert 0.1 < float(ident["flat_fraction"].mean()) < 0.9  # natural images have both regions
    for key in ("noise_removed_flat", "noise_removed_textured", "removed_low", "removed_high"):
        assert abs(float(ident[key].nanmean())) < 0.02 and float(oracle[key].nanmean()) > 0.999
    # identity keeps every detail (the noise is independent of B); the oracle too; smoothing loses detail
    assert abs(float(ident["detail_kept_textured"].nanmean()) - 1) < 0.1
    assert float(oracle["detail_kept_textured"].nanmean()) == pytest.approx(1.0)
    assert float(smooth["detail_kept_textured"].nanmean()) < 0.6
    # the smoother removes much noise in flat regions, less (detail lost) in textured ones; its error is
    # low-frequency-heavy compared with the identity's (white noise: mostly high frequencies)
    assert float(smooth["noise_removed_flat"].nanmean()) > float(smooth["noise_removed_textured"].nanmean()) + 0.2
    assert float(smooth["removed_high"].mean()) > float(smooth["removed_low"].mean())
    assert float(ident["err_high"].mean()) > 5 * float(ident["err_low"].mean())


def test_blur_decomposition_on_reference_networks(natural):
    for spec in ({"type": "blur", "sigma": 1.2}, {"type": "defocus", "radius": 2.0}):
        batch = make_degradation(spec).apply(natural.float(), torch.Generator().manual_seed(2))
        o, b = batch.degraded.double(), batch.clean.double()
        ident = content_quantities("blur", o, o, b)
        oracle = content_quantities("blur", b, o, b)
        worse = content_quantities("blur", _smooth(o, 1.0), o, b)
        assert abs(float(ident["blur_removed_edges"].nanmean())) < 1e-9
        assert float(oracle["blur_removed_edges"].nanmean()) == pytest.approx(1.0)
        assert float(worse["blur_removed_edges"].nanmean()) < -0.05  # more blur: the detail lost grows
        # blur takes the high band away: identity leaves it lost, an extra blur loses more of it
        assert float(ident["err_high"].mean()) > float(ident["err_low"].mean())
        assert float(worse["removed_high"].mean()) < 0 and abs(float(ident["removed_high"].mean())) < 1e-9
        assert float(oracle["psnr_edges"].mean()) >= 99  # error-free: PSNR at its 100 dB floor
        assert float(ident["psnr_flat"].nanmean()) > float(ident["psnr_edges"].nanmean())  # blur hurts edges


def _eval(splits: dict) -> object:
    from probe.probes.evaldata import eval_data_from_info

    return eval_data_from_info({"background": "natural", "splits": splits, "n_images": 4, "patch": 32, "seed": 3})


def test_probe_adds_content_rows_for_noise_and_blur_and_leaves_rain_alone():
    from probe.models.anchors import make_anchor
    from probe.probes.decomposition import Decomposition

    data = _eval({"id": {"type": "noise", "sigma": 20}, "ood": {"type": "defocus", "radius": 2.0},
                  "rain": {"type": "rain", "preset": "small"}})
    rows = {}
    for name in ("identity", "oracle"):
        result = Decomposition(n_examples=0).run(make_anchor(name), data)
        rows[name] = {(m["split"], m["metric"]): m for m in result.metrics}
        content = result.arrays["per_image_content"]
        assert np.isnan(content.sel(split="rain").values).all()  # rain: no content decomposition
    ident, oracle = rows["identity"], rows["oracle"]
    assert ident[("id", "noise_removed_flat")]["decomposition"] == "noise"
    assert ident[("ood", "blur_removed_edges")]["decomposition"] == "blur"
    assert not any(k[0] == "rain" and "decomposition" in m for k, m in ident.items())
    assert {k[1] for k in ident if k[0] == "rain"} == {k[1] for k in ident if k[0] == "id"} - set(
        quantity_names("noise"))  # rain keeps exactly the papers' decoupled rows
    for split, metric in (("id", "noise_removed_flat"), ("id", "removal_ratio"), ("ood", "blur_removed_edges")):
        assert abs(ident[(split, metric)]["value"]) < 0.02 and oracle[(split, metric)]["value"] > 0.999


def test_rain_results_have_no_content_array():
    from probe.models.anchors import make_anchor
    from probe.probes.decomposition import Decomposition

    result = Decomposition(n_examples=0).run(make_anchor("identity"), _eval({"id": {"type": "rain"}}))
    assert "per_image_content" not in result.arrays and all("decomposition" not in m for m in result.metrics)


def test_blur_removal_is_defined_on_smooth_backgrounds_where_the_rain_style_mask_is_empty():
    from probe.metrics import removal_ratio

    smooth = make_background("smooth", patch=48, seed=0).images(4)[..., :48, :48]
    batch = make_degradation({"type": "blur", "sigma": 1.2}).apply(smooth, torch.Generator().manual_seed(0))
    assert float(batch.mask.sum()) == 0  # blur changes no pixel of a smooth image by 10/255
    assert torch.isnan(removal_ratio(batch.degraded, batch.degraded, batch.clean, batch.mask)).all()
    o, b = batch.degraded.double(), batch.clean.double()
    assert float(content_quantities("blur", o, o, b)["blur_removed_image"].abs().max()) < 1e-9
    assert float(content_quantities("blur", b, o, b)["blur_removed_image"].min()) == pytest.approx(1.0)
