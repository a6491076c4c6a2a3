"""``leangen models``: list the model presets with family, task, resolution, parameter count and the paper's figures;
``leangen models --zoo``: the trained models shipped with leangen (``leangen.zoo``)."""
from __future__ import annotations

import io
import json
import shutil
from typing import Any, Sequence

import click


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
                 right: Sequence[int] = ()) -> str:
    """A text table (``rich`` when installed, plain columns otherwise). ``right``: indices of right-aligned columns.

    Rendered to a string at least as wide as the table's content, so cells are never cut to "…" in a narrow terminal,
    in a pipe or under ``CliRunner``.
    """
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    natural = sum(max([len(h), *(len(r[i]) for r in cells)]) + 3 for i, h in enumerate(headers))
    width = max(natural, shutil.get_terminal_size((120, 24)).columns)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain fallback: pad each column to its widest cell
        widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

        def line(vals: Sequence[str]) -> str:
            return "  ".join(v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(vals, widths)))

        out = ([title] if title else []) + [line(headers), line(["-" * w for w in widths])] + [line(r) for r in cells]
        return "\n".join(s.rstrip() for s in out)
    table = Table(title=title, title_justify="left", show_edge=False, header_style="bold", pad_edge=False)
    for i, h in enumerate(headers):
        table.add_column(h, justify="right" if i in right else "left", no_wrap=True)
    for r in cells:
        table.add_row(*r)
    buf = io.StringIO()
    Console(file=buf, width=width, highlight=False, color_system=None).print(table)
    return "\n".join(line.rstrip() for line in buf.getvalue().rstrip("\n").splitlines())


def meta_param_count(preset: Any, role: str = "G") -> int | None:
    """Parameters of ``preset``'s component ``role``, built on the ``meta`` device (no memory, no init cost)."""
    import torch

    try:
        with torch.device("meta"):
            model = preset.build(role)
    except Exception:  # a builder that needs real tensors: report unknown rather than allocating 500M floats
        return None
    return sum(p.numel() for p in model.parameters())


def preset_rows(family: str | None = None) -> list[dict[str, Any]]:
    """One dict per preset: name, family, task, resolution, objective, params (of the main component: G or
    model), description, paper figures."""
    from leangen.presets import list_presets

    rows = []
    for p in list_presets(family):
        rows.append(dict(name=p.name, family=p.family, task=p.task, resolution=p.resolution, objective=p.objective,
                         params=meta_param_count(p, p.main_component), components=sorted(p.components), description=p.description,
                         paper=dict(p.paper)))
    return rows


def zoo_family(card: dict[str, Any]) -> str:
    """The family of a zoo card's model: its preset's family when the preset is known (a card may record the preset
    name as its family), else the card's ``family``."""
    from leangen.presets import get_preset

    try:
        return get_preset(str(card.get("preset"))).family
    except (KeyError, ValueError):
        return str(card.get("family", ""))


def zoo_rows() -> list[dict[str, Any]]:
    """One dict per zoo entry: its card (name, family, task, data, metrics, training, command...) plus ``main_metric``
    (``[name, value]`` or None). An unreadable card is named on stderr and left out."""
    from leangen import zoo

    rows = []
    for name in zoo.available():
        try:
            card = zoo.card(name)
        except ValueError as e:
            click.echo(f"warning: {e}", err=True)
            continue
        rows.append(dict(card, name=name, family=zoo_family(card), main_metric=zoo.main_metric(card)))
    return rows


def _zoo_table(rows: list[dict[str, Any]]) -> str:
    table = []
    for r in rows:
        main, training = r["main_metric"], r.get("training") or {}
        seconds = training.get("seconds")
        table.append([r["name"], r.get("family", ""), r.get("task", ""), r.get("data", ""),
                      f"{r['params']:,}" if isinstance(r.get("params"), int) else "?",
                      f"{main[0]} {main[1]:.4g}" if main else "",
                      f"{seconds / 60:.1f} min" if isinstance(seconds, (int, float)) else "",
                      " ".join(str(training[k]) for k in ("device", "device_name") if training.get(k))])
    return render_table(["zoo model", "family", "task", "data", "params", "main metric", "training", "device"],
                        table, right=(4, 6))


def _fmt_m(n: float | None, digits: int = 2) -> str:
    return "" if n is None else f"{n:.{digits}f}"


@click.command(name="models", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("--family", default=None, metavar="F", help="Only this family (stylegan2, cips, pixelfolder, ...).")
@click.option("--zoo", "zoo", is_flag=True,
              help="List the trained models shipped with leangen instead (load one with leangen.load('zoo:NAME')).")
def command(as_json: bool, family: str | None, zoo: bool) -> None:
    """List model presets: family, task, resolution, parameters of the generator and the paper's figures.
    With --zoo, the trained models that ship with leangen: data, main metric, training time and device.

    Parameter counts are exact (the model is built on PyTorch's meta device, which allocates nothing).
    Paper columns quote the paper's own numbers where a preset reproduces a paper configuration.

    \b
    Examples:
      leangen models
      leangen models --family pixelfolder
      leangen models --json
      leangen models --zoo
    """
    if zoo:
        rows = [r for r in zoo_rows() if family is None or r.get("family") == family]
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        elif not rows:
            from leangen.zoo import root

            click.echo(f"no trained models{f' of family {family!r}' if family else ''} in the zoo ({root()})")
        else:
            click.echo(_zoo_table(rows))
            click.echo("load one with leangen.load('zoo:NAME'); each card.json holds the command that reproduces it")
        return
    from leangen.presets import list_presets

    if family is not None and not list_presets(family):
        families = sorted({p.family for p in list_presets()})
        from leangen.cli.common import fail

        fail(f"no presets of family {family!r}; families: {', '.join(families)}")
    rows = preset_rows(family)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = []
    for r in rows:
        paper = r["paper"]
        table.append([r["name"], r["family"], r["task"], r["resolution"],
                      f"{r['params']:,}" if r["params"] is not None else "?",
                      _fmt_m(paper.get("params_m")), _fmt_m(paper.get("gmacs")), _fmt_m(paper.get("throughput"), 1),
                      paper.get("source", "")])
    click.echo(render_table(["preset", "family", "task", "res", "params", "paper params (M)", "paper GMACs",
                             "paper im/s", "paper source"], table, right=(3, 4, 5, 6, 7)))
    notes = [(r["name"], r["paper"]["note"]) for r in rows if r["paper"].get("note")]
    for name, note in notes:
        click.echo(f"note ({name}): {note}")
