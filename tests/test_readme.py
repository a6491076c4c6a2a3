"""The README's commands work as written: the quick tour runs end to end (then the Python API block), and every other
``leangen`` command in the README parses, names existing presets and options."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from leangen.cli.main import cli
from leangen.registry import PRESETS, list_presets

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks(lang: str) -> list[tuple[str, str]]:
    """``(heading, code)`` for every fenced block of ``lang``, with the nearest ``##`` heading above it."""
    text = README.read_text()
    out = []
    for m in re.finditer(rf"```{lang}\n(.*?)```", text, re.S):
        heading = re.findall(r"^## (.+)$", text[:m.start()], re.M)
        out.append((heading[-1] if heading else "", m.group(1)))
    return out


def commands(code: str) -> list[list[str]]:
    """``leangen`` invocations in a bash block (comments dropped; ``torchrun ... -m leangen`` included)."""
    cmds = []
    for line in code.splitlines():
        line = line.split("  #")[0].strip()
        if not line or line.startswith("#"):
            continue
        argv = shlex.split(line)
        if "leangen" in argv:
            cmds.append(argv[argv.index("leangen") + 1:])
    return cmds


def tour() -> list[list[str]]:
    found = [code for heading, code in blocks("bash") if heading.startswith("A quick tour")]
    assert len(found) == 1, "README has one quick-tour block"
    return commands(found[0])


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
    (python_block,) = [code for heading, code in blocks("python") if heading == "Python API"]
    res = subprocess.run([sys.executable, "-c", python_block], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def _command_for(argv: list[str]) -> tuple[click.Command, list[str], str]:
    group: click.Command = cli
    path = []
    while isinstance(group, click.Group):
        name, argv = argv[0], argv[1:]
        sub = group.get_command(click.Context(group), name)
        assert sub is not None, f"no verb {' '.join(path + [name])!r}"
        group, path = sub, path + [name]
    return group, argv, " ".join(path)


def test_every_readme_command_parses() -> None:
    presets = set(PRESETS) or {p.name for p in list_presets()}
    checked = 0
    for _, code in blocks("bash"):
        for argv in commands(code):
            if not argv:
                continue
            cmd, args, name = _command_for(argv)
            try:
                cmd.make_context(f"leangen {name}", list(args))
            except click.BadParameter as e:
                # paths that exist only on a user's machine (e.g. --input labels/) are fine here
                assert "does not exist" in str(e), f"leangen {' '.join(argv)}: {e}"
            except click.exceptions.Exit:
                pass
            for flag in ("--preset",):
                if flag in args:
                    assert args[args.index(flag) + 1] in presets, f"unknown preset in: leangen {' '.join(argv)}"
            for token in args:
                m = re.fullmatch(r"runs/\d{5}-(.+)", token)
                if m:  # a run directory name is <preset>-<data name>: its preset must exist
                    assert any(m.group(1).startswith(p + "-") for p in presets), token
            checked += 1
    assert checked >= 25
