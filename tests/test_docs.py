"""The documentation stays true: the CLI reference matches the parser, every relative link resolves, the
README stays a front door (≤ 8,000 characters, the two quick-start commands that CI runs)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from probe.cli_docs import render

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
REFRESH = "python -m probe.cli_docs > docs/cli.md"

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def links(text: str) -> list[str]:
    """Targets of the inline Markdown links of ``text``, code blocks and code spans left out."""
    return _LINK.findall(_CODE.sub("", _FENCE.sub("", text)))


def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    for heading in _HEADING.findall(_FENCE.sub("", text)):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """'file: target (why)' for every relative link of ``path`` that does not resolve."""
    bad = []
    for target in links(path.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
            continue  # http:, https:, mailto: …: not checked here (no network in tests)
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        name = path.relative_to(root)
        if not dest.exists():
            bad.append(f"{name}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
            bad.append(f"{name}: {target} (no heading #{anchor} in {dest.name})")
    return bad


def test_cli_reference_is_current():
    committed = (DOCS / "cli.md").read_text(encoding="utf-8") if (DOCS / "cli.md").exists() else ""
    assert render() == committed, f"docs/cli.md is stale: run `{REFRESH}` and commit it"


def test_cli_reference_lists_every_command_and_option():
    from probe.cli import build_parser
    from probe.cli_docs import walk

    page = render()
    commands = [command for command, _, _ in walk(build_parser())]
    assert {"probe grid run", "probe grid status", "probe measure", "probe prior train", "probe list"} <= set(commands)
    for command, _, parser in walk(build_parser()):
        assert f"## `{command}`" in page
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}`" in page, (command, flag)


def test_cli_reference_generator_follows_any_parser():
    """A new sub-command and option appear without touching the generator; table cells stay one cell."""
    parser = argparse.ArgumentParser(prog="probe", description="top")
    parser.add_argument("--debug", action="store_true")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("frob", help="frobnicate a | b")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    p.add_argument("target", help="what to frob")
    p.add_argument("--mode", choices=["x", "y"], default="x", help="mode <m>")
    p.add_argument("--tag", action="append", default=[], metavar="K=V")
    p.add_argument("--width", type=int, default=7, help="columns (default %(default)s)")
    p.add_argument("--secret", help=argparse.SUPPRESS)
    inner = p.add_subparsers(dest="action").add_parser("now", help="at once")
    inner.add_argument("--level", type=int, default=3, required=False)
    page = render(parser)
    assert "## `probe frob`" in page and "## `probe frob now`" in page
    assert "probe frob [options] TARGET ACTION" in page
    assert "| `--mode` | `{x,y}` | `x` | mode &lt;m> |" in page
    assert "| `--tag` | `K=V` |  | (repeatable) |" in page
    assert "| `--level` | `LEVEL` | `3` |  |" in page
    assert "| `--width` | `WIDTH` | `7` | columns (default 7) |" in page and "--secret" not in page
    assert "frobnicate a | b" in page  # prose line, not a table cell
    assert page.count("| `--debug` |") == 1  # the top-level option is listed once, not again under `frob`
    assert "also after any command name" not in page  # `frob now` does not take --debug


def test_every_relative_link_resolves():
    bad = [line for path in markdown_files() for line in broken_links(path)]
    assert not bad, "broken links:\n" + "\n".join(bad)


_REPO_PATH = re.compile(r"`((?:analyses|benchmarks|probe|docs|tests)/[\w./-]+\.(?:toml|py|md|csv))`")


def test_every_repository_file_named_in_the_docs_exists():
    """Inline-code paths such as `analyses/remedies.toml` or `probe/grid/estimate.py` name real files."""
    missing = [f"{path.relative_to(ROOT)}: {name}" for path in markdown_files()
               for name in _REPO_PATH.findall(_FENCE.sub("", path.read_text(encoding="utf-8")))
               if not (ROOT / name).exists()]
    assert not missing, "files named in the docs that do not exist:\n" + "\n".join(missing)


def test_link_checker_catches_a_broken_file_and_anchor(tmp_path):
    (tmp_path / "a.md").write_text("# Top\n\n## Two words, here (x)\n\n[ok](#two-words-here-x) [ok](b.md#b)\n"
                                   "[gone](c.md) [no anchor](b.md#nope) [web](https://example.org/x)\n"
                                   "`[code](missing.md)`\n```\n[fenced](missing.md)\n```\n", encoding="utf-8")
    (tmp_path / "b.md").write_text("# B\n", encoding="utf-8")
    assert broken_links(tmp_path / "a.md", tmp_path) == ["a.md: c.md (no such file)",
                                                         "a.md: b.md#nope (no heading #nope in b.md)"]


def test_anchors_follow_github_slugs():
    text = "# `shortcut` — one score, per model (study-level)\n## Real pairs\n## Real pairs\n"
    assert anchors(text) == {"shortcut--one-score-per-model-study-level", "real-pairs", "real-pairs-1"}


def test_every_docs_page_is_reachable_from_the_readme():
    reached, todo = set(), [README.resolve()]
    while todo:
        page = todo.pop()
        if page in reached or page.suffix != ".md" or not page.exists():
            continue
        reached.add(page)
        for target in links(page.read_text(encoding="utf-8")):
            file_part = target.partition("#")[0]
            if file_part and not re.match(r"^[a-z][a-z0-9+.-]*:", file_part, re.I):
                todo.append((page.parent / file_part).resolve())
    orphans = [str(p.relative_to(ROOT)) for p in DOCS.rglob("*.md") if p.resolve() not in reached]
    assert not orphans, f"pages no link leads to (add them to docs/index.md): {orphans}"


def test_readme_is_a_front_door():
    text = README.read_text(encoding="utf-8")
    assert len(text) <= 8000, f"README.md has {len(text)} characters; the limit is 8,000 (move text to docs/)"
    quick = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.strip().splitlines()]
    assert commands == ["make demo", "make test"]


@pytest.mark.parametrize("target", ["demo", "test"])
def test_quick_start_commands_exist_and_ci_runs_the_test_command(target):
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no `{target}` target"
    assert "probe demo" in makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, re.M), ".ci/run must call the README's test command `make test`"
