"""The attribution section's faithfulness and CEM tables read the store's rows and name maps no better than
random."""

from __future__ import annotations

import numpy as np
import pandas as pd

from probe.methods.faithfulness import NOT_BETTER
from probe.report.sections._attribution_checks import cem_table, faithfulness_table


def _row(model, probe, metric, value, flag="", low=np.nan, high=np.nan, method="ig"):
    return {"model_id": model, "probe": probe, "metric": metric, "value": value, "flag": flag, "ci_low": low,
            "ci_high": high, "method": method, "split": "ood", "window": "on"}


def test_faithfulness_verdicts_and_cem_cells():
    frame = pd.DataFrame([
        _row("a", "attribution", "deletion_gain", 0.4, low=0.3, high=0.5),
        _row("b", "attribution", "deletion_gain", 0.01, NOT_BETTER, -0.1, 0.1),
        _row("b", "cem", "insertion_gain", np.nan, "objective does not respond to the perturbation",
             method="cem"),
        _row("b", "cem", "rain_share", np.nan, "removes nothing: ...", method="cem"),
        _row("b", "cem", "effect_reach", 8.0, low=8.0, high=8.0, method="cem"),
        _row("_study", "attribution", "deletion_gain", 1.0),
    ])
    faith = faithfulness_table(frame)
    verdict = dict(zip(zip(faith["model_id"], faith["probe"]), faith["verdict"]))
    assert verdict[("a", "attribution")] == "better than random"
    assert verdict[("b", "attribution")] == "no better than random"
    assert verdict[("b", "cem")].startswith("objective does not respond")
    assert "_study" not in set(faith["model_id"])
    cems = cem_table(frame)
    assert cems.loc[0, "rain share"].startswith("n/a (removes nothing")
    assert cems.loc[0, "effect reach (px)"] == "8 [8, 8]"
    assert faithfulness_table(pd.DataFrame()).empty and cem_table(None).empty
