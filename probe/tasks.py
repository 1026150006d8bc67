"""The words and headline metrics of a study's restoration task, derived from its degradation's decomposition.

A degradation declares its decomposition (``Degradation.decomposition``: ``rain`` | ``noise`` | ``blur``);
the ``decomposition`` probe stores it on its noise / blur rows (column ``decomposition``); the report and
``probe demo`` read it back with :func:`task_of` and word titles, axes, headline and captions from the
:class:`Task` — never from the study's name. A study whose rows carry no decomposition is a rain study.

>>> TASKS["noise"].removed, TASKS["blur"].task
('noise removed', 'deblurring')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Task:
    """How a report speaks of one task. ``fidelity_metric``: the decomposition row of the ``id`` split that
    the headline correlates with ``n_backgrounds`` as in-distribution content fidelity (rain: PSNR where
    there is no rain; noise, which covers every pixel: the whole image; blur: flat regions of B, where blur
    changes little); ``bars`` / ``curves``: (metric, label, log scale) of the decomposition figures."""

    decomposition: str
    noun: str  # "rain", "noise", "blur"
    task: str  # "deraining", ...
    examples: str  # what a content-learning network does to the unseen degradation in the example strips
    fidelity_metric: str
    fidelity_label: str
    fidelity_where: str
    bars: tuple[tuple[str, str, bool], ...]
    bars_caption: str
    curves: tuple[tuple[str, str, bool], ...]
    #: the decomposition row read as "fraction of the degradation removed" (headline, score validity, effects)
    removal_metric: str = "removal_ratio"

    @property
    def removed(self) -> str:
        return f"{self.noun} removed"

    @property
    def unseen(self) -> str:
        return f"unseen {self.noun}"

    def reword(self, text: str) -> str:
        """``text`` written for rain, in this task's words (unchanged for rain): "rain streaks" / "streak(s)"
        → the noun, "rain" → the noun, "deraining" → the task. For sections worded generically elsewhere.

        >>> TASKS["blur"].reword("Rain left where rain streaks were; deraining")
        'Blur left where blur was; deblurring'
        """
        if self.decomposition == "rain" or not text:
            return text
        import re

        def cased(word: str) -> Any:
            return lambda m: word.capitalize() if m.group(0)[0].isupper() else word

        text = re.sub(r"\brain streaks were\b", f"{self.noun} was", text, flags=re.I)
        text = re.sub(r"\b(rain )?streaks?\b", cased(self.noun), text, flags=re.I)
        text = re.sub(r"\bderaining\b", cased(self.task), text, flags=re.I)
        return re.sub(r"\brain\b", cased(self.noun), text, flags=re.I)


TASKS: dict[str, Task] = {
    "rain": Task(
        "rain", "rain", "deraining", "A network that learned the content removes the unseen streaks; one that "
        "learned the rain leaves them.", "psnr_bg_region", "bg PSNR", "the background PSNR (where there is no rain)",
        (("mse_rain", "MSE rain region", True), ("mse_bg", "MSE background region", True)),
        "Shortcut learning shows as mse_rain rising on OOD splits while mse_bg stays low.",
        (("removal_ratio", "rain removed (ratio)", False), ("mse_rain", "MSE rain region", True),
         ("mse_bg", "MSE background region", True))),
    "noise": Task(
        "noise", "noise", "denoising", "A network that learned the content removes the unseen noise and keeps "
        "the detail; one that learned the noise leaves it.", "psnr_image", "image PSNR",
        "the image PSNR (noise covers every pixel)",
        (("noise_removed_flat", "noise removed, flat regions", False),
         ("noise_removed_textured", "noise removed, textured regions", False),
         ("detail_kept_textured", "detail kept, textured regions", False)),
        "Noise removed in flat vs textured regions of the clean image, and the fine detail kept in textured "
        "ones (1 = all): shortcut learning shows as noise left on OOD splits; over-smoothing as lost detail.",
        (("removal_ratio", "noise removed (ratio)", False),
         ("noise_removed_flat", "noise removed, flat regions", False),
         ("detail_kept_textured", "detail kept, textured regions", False))),
    "blur": Task(
        "blur", "blur", "deblurring", "A network that learned the content sharpens the unseen blur; one that "
        "learned the blur leaves it.", "psnr_flat", "flat-region PSNR",
        "the PSNR in flat regions of the clean image (where blur changes little)",
        (("blur_removed_edges", "blur removed at edges", False), ("removed_low", "detail restored, low band", False),
         ("removed_mid", "detail restored, mid band", False), ("removed_high", "detail restored, high band", False)),
        "Blur removed at edges of the clean image and the lost detail restored per frequency band (1 = all, "
        "0 = untouched, < 0 = worse): shortcut learning shows as these falling on OOD splits.",
        (("blur_removed_image", "blur removed (ratio)", False),
         ("blur_removed_edges", "blur removed at edges", False),
         ("removed_high", "detail restored, high band", False)),
        # blur's mask (|D| > 10/255) is empty on smooth backgrounds, so the rain-style removal_ratio is
        # undefined there: the whole-image ratio 1 - ||E|| / ||D|| is defined wherever blur changed anything
        removal_metric="blur_removed_image"),
}
DEFAULT = "rain"


def get_task(name: Any) -> Task:
    """The :class:`Task` of a decomposition name (the rain task for None or an unknown name)."""
    return TASKS.get(str(name), TASKS[DEFAULT]) if name else TASKS[DEFAULT]


def task_of(metrics: Any) -> Task:
    """The task of a study from its tidy metrics (:func:`probe.store.read_metrics`): the most frequent
    ``decomposition`` of the decomposition probe's rows (the ``id`` split's when it has one); rain when none."""
    if metrics is None or not len(metrics) or "decomposition" not in metrics:
        return TASKS[DEFAULT]
    rows = metrics[(metrics["probe"] == "decomposition") & metrics["decomposition"].notna()]
    rows = rows[rows["decomposition"].astype(str).isin(TASKS)]
    if rows.empty:
        return TASKS[DEFAULT]
    own = rows[rows["split"] == "id"]
    return TASKS[str((own if len(own) else rows)["decomposition"].astype(str).mode().iloc[0])]




def task_of_degradation(spec: Any) -> str:
    """The decomposition (rain | noise | blur) of a degradation spec (``{"type": ...}``); rain when unknown."""
    try:
        from probe.data.degradations import DEGRADATIONS

        return str(getattr(DEGRADATIONS.get(str((spec or {}).get("type", "rain"))), "decomposition", DEFAULT))
    except Exception:  # noqa: BLE001 - an unknown type is refused where the degradation is built, not here
        return DEFAULT


def study_task(metrics: Any, stored: Any = None) -> Task:
    """The study's task: ``stored`` (the study record's) if given, else the most frequent ``task`` of the
    models' stored infos, else — for stores written before infos had a task — :func:`task_of` the rows."""
    if stored:
        return get_task(stored)
    if metrics is not None and len(metrics) and "task" in metrics:
        tasks = metrics.drop_duplicates("model_id")["task"].dropna().astype(str)
        tasks = tasks[tasks.isin(TASKS)]
        if len(tasks):
            return TASKS[tasks.mode().iloc[0]]
    return task_of(metrics)


__all__ = ["TASKS", "Task", "get_task", "study_task", "task_of", "task_of_degradation"]
