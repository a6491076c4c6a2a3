"""The README and ``docs/`` say what the code does: every fenced code block in them is checked, whatever its tag.

- the README's quick tour runs end to end, then its Python API block (slow);
- every other shell line must be a command we know: each ``leangen`` command parses and names existing presets,
  ``make`` targets exist in the Makefile, ``python`` scripts exist in the repository;
- every Python block compiles; JSON blocks parse; an unknown tag fails;
- ``docs/benchmarks.md`` is what ``benchmarks/make_docs.py`` renders from ``benchmarks/results/*.json``, and every
  figure in the README's family table is one of its figures;
- relative links point to files that exist.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from leangen.cli.main import cli
from leangen.registry import PRESETS, list_presets

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
SHELL_TAGS = {"", "bash", "sh", "shell", "console"}
# programs a shell line may start with; how each is checked is in check_shell_line
PROGRAMS = {"leangen", "torchrun", "make", "python", "python3", "pip"}


@dataclass
class Block:
    """One fenced code block: the file, the nearest heading above it, its tag and its text."""
    path: Path
    heading: str
    lang: str
    code: str

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)} ({self.heading or 'top'}, ```{self.lang})"


def blocks(paths: list[Path] = DOCS) -> list[Block]:
    """Every fenced block of the given Markdown files, tagged or not."""
    out = []
    for path in paths:
        text = path.read_text()
        for m in re.finditer(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", text, re.S | re.M):
            heading = re.findall(r"^#{1,6} (.+)$", text[:m.start()], re.M)
            out.append(Block(path, heading[-1] if heading else "", m.group(1).strip(), m.group(2)))
    return out


def shell_lines(code: str) -> list[list[str]]:
    """The simple commands of a shell block: comments dropped, ``&&`` chains split, ``VAR=value`` prefixes removed."""
    cmds = []
    for line in code.splitlines():
        for part in line.split("&&"):
            argv = shlex.split(part, comments=True)  # a word starting with # starts a comment, as in the shell
            while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", argv[0]):
                argv = argv[1:]
            if argv:
                cmds.append(argv)
    return cmds


def leangen_args(argv: list[str]) -> list[str] | None:
    """The arguments after ``leangen`` (also ``torchrun ... -m leangen``), or None for another program."""
    return argv[argv.index("leangen") + 1:] if "leangen" in argv else None


def tour() -> list[list[str]]:
    found = [b.code for b in blocks([README]) if b.heading.startswith("A quick tour")]
    assert len(found) == 1, "README has one quick-tour block"
    return [a for a in map(leangen_args, shell_lines(found[0])) if a is not None]


def run_leangen(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leangen", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_quick_tour_runs_as_written(tmp_path: Path) -> None:
    env = dict(os.environ, LEANGEN_CACHE=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    for args in tour():
        res = run_leangen(args, tmp_path, env)
        assert res.returncode == 0, f"leangen {' '.join(args)}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    assert (tmp_path / "out/pixels/grid.png").is_file() and (tmp_path / "out/student/seed0003.png").is_file()
    # the Python API block runs after the tour, in the same directory
    (python_block,) = [b.code for b in blocks([README]) if b.lang == "python" and b.heading == "Python API"]
    res = subprocess.run([sys.executable, "-c", python_block], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def _command_for(argv: list[str]) -> tuple[click.Command, list[str], str]:
    group: click.Command = cli
    path: list[str] = []
    while isinstance(group, click.Group):
        assert argv, f"leangen {' '.join(path)} needs a sub-command"
        name, argv = argv[0], argv[1:]
        sub = group.get_command(click.Context(group), name)
        assert sub is not None, f"no verb {' '.join(path + [name])!r}"
        group, path = sub, path + [name]
    return group, argv, " ".join(path)


def check_leangen(args: list[str], presets: set[str]) -> None:
    """A ``leangen`` command parses with the real CLI and names existing presets; raises AssertionError otherwise."""
    cmd, rest, name = _command_for(args)
    try:
        cmd.make_context(f"leangen {name}", list(rest))
    except click.BadParameter as e:
        # paths that exist only on a user's machine (e.g. --input labels/) are fine here
        assert "does not exist" in str(e), str(e)
    except click.exceptions.Exit:
        pass
    except click.UsageError as e:
        raise AssertionError(str(e)) from None
    if "--preset" in rest:
        assert rest[rest.index("--preset") + 1] in presets, "unknown preset"
    for token in rest:
        m = re.fullmatch(r"runs/\d{5}-(.+)", token)
        if m:  # a run directory name is <preset>-<data name>: its preset must exist
            assert any(m.group(1).startswith(p + "-") for p in presets), f"no preset for run directory {token}"


def make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", (ROOT / "Makefile").read_text(), re.M))


def check_shell_line(argv: list[str], presets: set[str]) -> None:
    """One command of a shell block, by its program."""
    prog = Path(argv[0]).name
    assert prog in PROGRAMS, f"unknown program {argv[0]!r} (known: {sorted(PROGRAMS)})"
    args = leangen_args(argv)
    if args is not None:
        check_leangen(args, presets)
    elif prog == "make":
        missing = [t for t in argv[1:] if not t.startswith("-") and "=" not in t and t not in make_targets()]
        assert not missing, f"no Makefile target {missing}"
    elif prog.startswith("python"):
        script = next((a for a in argv[1:] if a.endswith(".py")), None)
        assert script is None or (ROOT / script).is_file(), f"no script {script}"


def test_every_block_in_readme_and_docs_is_checked() -> None:
    presets = set(PRESETS) or {p.name for p in list_presets()}
    failures, checked = [], 0
    for b in blocks():
        if b.lang in SHELL_TAGS:
            for argv in shell_lines(b.code):
                try:
                    check_shell_line(argv, presets)
                except AssertionError as e:
                    failures.append(f"{b.where()}: {shlex.join(argv)}\n    {e}")
                checked += 1
        elif b.lang == "python":
            try:
                compile(b.code, str(b.path), "exec")
            except SyntaxError as e:
                failures.append(f"{b.where()}: {e}")
            checked += 1
        elif b.lang == "json":
            try:
                json.loads(b.code)
            except ValueError as e:
                failures.append(f"{b.where()}: {e}")
            checked += 1
        elif b.lang == "text":  # diagrams: nothing to run, but a command hidden in one would go unchecked
            hidden = [ln for ln in b.code.splitlines() if ln.strip().split(" ")[0] in PROGRAMS]
            if hidden:
                failures.append(f"{b.where()}: a command in a text block is never checked: {hidden[0].strip()}")
            checked += 1
        else:
            failures.append(f"{b.where()}: a code block tag this test does not check")
    assert not failures, "\n".join(failures)
    assert checked >= 40


def test_docs_benchmarks_is_generated_from_the_results() -> None:
    spec = importlib.util.spec_from_file_location("make_docs", ROOT / "benchmarks" / "make_docs.py")
    make_docs = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(make_docs)  # type: ignore[union-attr]
    page = make_docs.render_page()
    assert (ROOT / "docs" / "benchmarks.md").read_text() == page, \
        "docs/benchmarks.md is out of date: run python benchmarks/make_docs.py"
    for path in (ROOT / "benchmarks" / "results").glob("*.json"):
        assert f"benchmarks/results/{path.name}" in page, path.name
    # no latency of the official code from another process beside ours, and no ratio to it
    assert not re.search(r"÷ anchor|official \(anchor\)|official \(s, quoted\)", page)


def _numbers(text: str) -> set[str]:
    return set(re.findall(r"\d+(?:\.\d+)?", text.replace(",", "")))


def test_readme_family_figures_come_from_the_benchmarks() -> None:
    """Each number in the 'figures' column of the README's family table is a figure of docs/benchmarks.md (which is
    generated from the JSON), apart from resolutions."""
    text = README.read_text()
    table = re.search(r"^\| family \|.*?\n\n", text, re.S | re.M)
    assert table, "README starts with the family table"
    rows = [r.split("|") for r in table.group(0).splitlines()[2:] if r.strip()]
    figures = " ".join(re.sub(r"\(\[.*?\]\(.*?\)\)|\d+²", "", r[-2]) for r in rows)
    found = _numbers(figures)
    assert len(found) >= 6
    missing = found - _numbers((ROOT / "docs" / "benchmarks.md").read_text())
    assert not missing, f"README figures not in docs/benchmarks.md: {sorted(missing)}"


def test_relative_links_resolve() -> None:
    broken = []
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            resolved = (path.parent / target).resolve()
            if not resolved.exists():
                broken.append(f"{path.relative_to(ROOT)} -> {target}")
    assert not broken, broken
