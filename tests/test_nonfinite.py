"""Non-finite values anywhere in a probe (features, outputs, attributions) become NaN with a flag in the
metric rows — never a number (issue 12 item 2, issue 13 kind 5). The network: a tiny resnet with one
overflowed (inf) weight, as after a blown-up fp16 run, so every activation from that layer on is inf/NaN."""

import math

import pytest
import torch

from probe.models import build
from probe.probes import PROBES
from probe.probes.base import ProbeResult
from probe.probes.evaldata import eval_data_from_info

INFO = {"background": "smooth", "splits": {"id": {"type": "rain", "preset": "small"},
                                           "ood": {"type": "rain", "preset": "large"}},
        "n_images": 6, "patch": 32, "seed": 0, "background_options": {}}


@pytest.fixture(scope="module")
def broken():
    torch.manual_seed(0)
    model = build("resnet", size="tiny")
    name = [k for k, v in model.state_dict().items() if k.endswith("weight") and v.dim() == 4][2]
    with torch.no_grad():
        model.state_dict()[name][0, 0, 0, 0] = float("inf")
    model.eval()
    acts = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: acts.__setitem__(n, bool(torch.isfinite(o).all())))
             for n, m in model.named_modules() if n in set(model.probe_points())]
    data = eval_data_from_info(INFO)
    with torch.no_grad():
        out = model(data.splits["id"].degraded)
    for h in hooks:
        h.remove()
    assert not torch.isfinite(out).all()
    bad_layers = {n for n, ok in acts.items() if not ok}
    assert bad_layers and len(bad_layers) < len(acts)  # some layers before the broken one stay finite
    return model, data, bad_layers


def test_add_metric_never_stores_a_nonfinite_number():
    r = ProbeResult()
    r.add_metric("id", "a", float("inf"))
    r.add_metric("id", "b", None, flag="why")
    r.add_metric("id", "c", 1.5)
    a, b, c = r.metrics
    assert math.isnan(a["value"]) and a["flag"] == "non-finite"
    assert math.isnan(b["value"]) and b["flag"] == "why"
    assert c["value"] == 1.5 and "flag" not in c


@pytest.mark.parametrize("probe, params", [
    ("generalization", {}),
    ("decomposition", {}),
    ("activations", {"n_images": 6, "pixels_per_class": 8}),
    ("cka", {"n_images": 6, "batch_size": 6}),
    ("ddr", {"n_backgrounds": 3, "samples_per_pair": 1}),
    ("attribution", {"n_images": 1, "steps": 2, "window": 8, "splits": ["ood"]}),
])
def test_every_probe_flags_nonfinite_results(broken, probe, params):
    model, data, bad_layers = broken
    result = PROBES.get(probe)(**params).run(model, data)
    assert result.metrics
    flagged = 0
    for row in result.metrics:
        if not math.isfinite(row["value"]):
            assert row.get("flag"), row  # every NaN says why
            flagged += 1
        layer = row.get("layer")
        output_level = layer is None and probe != "activations"
        from_broken = (layer in bad_layers) if layer is not None else output_level
        if from_broken and row["metric"] not in ("psnr_input", "ssim_input", "mse_rain_input", "map_size",
                                                 "mask_fraction", "crop_fraction"):
            assert math.isnan(row["value"]) and row.get("flag"), row  # computed from broken data: never a number
    assert flagged > 0


def test_report_tables_mark_missing_numbers(broken, tmp_path):
    from probe.report.build import NA_MARK, build_report, render
    from probe.report.context import ReportContext, Section, Table
    from probe.store import ResultStore, read_metrics

    model, data, _ = broken
    store = ResultStore(tmp_path / "results.h5")
    info = {"family": "resnet", "size": "tiny", "background": "smooth", "n_backgrounds": 4, "seed": 0}
    for name in ("generalization", "decomposition"):
        probe = PROBES.get(name)()
        store.write("broken", info, name, probe.params, probe.run(model, data), eval_info=data.info)
    df = read_metrics(tmp_path / "results.h5")
    assert df["value"].isna().any() and (df.loc[df["value"].isna(), "flag"] != "").all()
    build_report(tmp_path)  # a broken model does not stop the report
    # a table holding such a row shows the mark and the note, never a bare number or dash
    ctx = ReportContext.load(tmp_path)
    frame = df[(df["probe"] == "generalization") & (df["split"] == "ood")][["metric", "value", "flag"]]
    html = render(ctx, [Section("t", tables=[Table("t", "t", frame)])])
    assert NA_MARK in html and "flag</code> column says why" in html
