"""Model cards under fuzzing (issue 13 kind 8): any wrong key, type or value is one ConfigError naming the card,
never a raw traceback; a well-formed card always parses."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probe.errors import ConfigError
from probe.models.card import _TYPES, read_card

FUZZ = settings(max_examples=40, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])

SCALARS = st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=8))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3),
                   st.dictionaries(st.text(min_size=1, max_size=4), SCALARS, max_size=2))
KEYS = st.one_of(st.sampled_from(sorted(_TYPES)), st.text(min_size=1, max_size=6))


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {_toml(v)}" for k, v in value.items()) + "}"


def _write(table: dict) -> Path:
    folder = Path(tempfile.mkdtemp())
    card = folder / "card.toml"
    lines = [f"{json.dumps(k, ensure_ascii=False)} = {_toml(v)}" for k, v in table.items()]
    card.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return card


@FUZZ
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_any_card_parses_or_is_one_config_error_naming_it(table):
    card = _write(table)
    try:
        parsed = read_card(card)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and str(card) in message
        return
    assert parsed.weights.name and (parsed.arch is None) != (parsed.family is None)


@FUZZ
@given(name=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=10),
       pad=st.integers(1, 64), strict=st.booleans())
def test_well_formed_cards_always_parse(name, pad, strict):
    card = _write({"name": name, "arch": "net.py:Net", "weights": "w.pth", "pad_multiple": pad, "strict": strict})
    parsed = read_card(card)
    assert parsed.name == name and parsed.strict is strict and parsed.arch == f"{card.parent / 'net.py'}:Net"
    assert parsed.conventions["pad_multiple"] == pad and parsed.weights == card.parent / "w.pth"
