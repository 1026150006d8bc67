"""Probes: one file each, one registry line each, one call contract (see :mod:`probe.probes.base`)."""

from __future__ import annotations

from probe.registry import Registry

PROBES = Registry(
    "probe",
    lazy={
        "generalization": "probe.probes.generalization:Generalization",
        "decomposition": "probe.probes.decomposition:Decomposition",
        "activations": "probe.probes.activations:Activations",
        "cka": "probe.probes.cka:CKAProbe",
        "ddr": "probe.probes.ddr:DDR",
        "attribution": "probe.probes.attribution:Attribution",
        "cem": "probe.probes.cem:CEM",
        "shortcut": "probe.shortcut:Shortcut",  # study-level: scored by `probe measure` after every model
        "cka_models": "probe.cross_models:CrossModelCKA",  # study-level: model x model CKA, brought by cka
    },
)
