"""``EvalSpec``: which synthetic evaluation set a training config declares — the one place for its defaults.

The ``[eval]`` table of a training config wins; the background (and its options) default to the training
source's held-out images, the patch to the training patch (else :data:`DEFAULT_PATCH`), the splits to the
training degradation alone (``id``). :meth:`EvalSpec.to_dict` is the JSON stored with every probe result and
its keys are :func:`probe.data.paired.evaluation_set`'s arguments::

    from probe.records import EvalSpec
    spec = EvalSpec.from_config(run_record.config)
    spec.patch, list(spec.splits)        # (24, ['id', 'ood'])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

#: evaluation image count when neither ``[eval] n_images`` is given
DEFAULT_N_IMAGES = 16
#: evaluation patch (px) when neither ``[eval] patch`` nor ``[data] patch`` is given (TrainConfig's default)
DEFAULT_PATCH = 48
#: evaluation seed when ``[eval] seed`` is not given
DEFAULT_SEED = 12345
#: centre crop (px) of folders of real pairs when ``--eval-patch`` is not given (0/None: whole images)
DEFAULT_FOLDER_PATCH = 128
#: the degradation a config without one is evaluated on
DEFAULT_DEGRADATION: dict[str, Any] = {"type": "rain", "preset": "small"}


@dataclass(frozen=True)
class EvalSpec:
    """A synthetic evaluation set: held-out ``background`` images (``n_images``, centre-cropped to ``patch``
    px), degraded per split with a generator seeded from (``seed``, split name)."""

    background: str | None
    splits: dict[str, Any]
    n_images: int = DEFAULT_N_IMAGES
    patch: int = DEFAULT_PATCH
    seed: int = DEFAULT_SEED
    background_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EvalSpec:
        """The evaluation set a training config (``TrainConfig.to_dict()`` / ``run.json["config"]``) declares."""
        data = config.get("data") or {}
        ev = config.get("eval") or {}
        options = ev.get("background_options")
        if options is None:
            options = data.get("background_options", {}) if ev.get("background") is None else {}
        return cls(background=ev.get("background") or data.get("background"),
                   splits=dict(ev.get("splits") or {"id": config.get("degradation") or dict(DEFAULT_DEGRADATION)}),
                   n_images=int(ev.get("n_images") or DEFAULT_N_IMAGES),
                   patch=int(ev.get("patch") or data.get("patch") or DEFAULT_PATCH),
                   seed=int(ev.get("seed", DEFAULT_SEED)), background_options=dict(options or {}))

    @classmethod
    def from_dict(cls, info: Mapping[str, Any]) -> EvalSpec:
        """The inverse of :meth:`to_dict` (extra keys are ignored)."""
        return cls(background=info.get("background"), splits=dict(info.get("splits") or {}),
                   n_images=int(info.get("n_images") or DEFAULT_N_IMAGES),
                   patch=int(info.get("patch") or DEFAULT_PATCH), seed=int(info.get("seed", DEFAULT_SEED)),
                   background_options=dict(info.get("background_options") or {}))

    def with_images(self, n_images: int | None) -> EvalSpec:
        return replace(self, n_images=int(n_images)) if n_images else self

    def to_dict(self) -> dict[str, Any]:
        """JSON: ``background, background_options, n_images, patch, seed, splits``."""
        return {"background": self.background, "background_options": dict(self.background_options),
                "n_images": self.n_images, "patch": self.patch, "seed": self.seed, "splits": dict(self.splits)}

    @property
    def source(self) -> str:
        """A label of the background source (``smooth``, ``natural``, …; ``?`` when unknown)."""
        return str(self.background or "?")
