"""Quality of the model zoo, and the papers' orderings measured on it (issue 23).

Reads every ``card.json`` of the zoo (``src/leangen/zoo/weights/`` unless ``--zoo-dir``; written by
``benchmarks/zoo.py``) and writes ``results/quality-<device>.json`` and ``.md``: per comparison group a table (entry,
parameters, kimg, training minutes, device, every metric, a link to its sample grid), then each paper's ordering
marked held or not held, with the margin. Nothing is trained or measured here: the figures are the cards' own (FID/KID
on the validation split under the named protocol, bits/dim, fid_pairs), so a claim is as good as the runs behind it:
small CPU runs at 32² on OpenMoji, not the papers' settings.

Usage::

    python benchmarks/quality.py                      # the shipped zoo -> results/quality-<device>.json|md
    python benchmarks/quality.py --zoo-dir /tmp/zoo   # another zoo (e.g. one trained on a GPU)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from _common import fmt, md_table, write_results  # noqa: E402

from leangen.cli.models import zoo_family as family  # noqa: E402  (a card may record its preset as the family)

NOTE = ("The runs here are small CPU runs at 32×32 on the built-in OpenMoji data, with an equal kimg budget inside "
        "each group; the papers train for days on FFHQ, LSUN, ImageNet or Cityscapes at 64-1024 px. A claim held or "
        "not held here says how the orderings come out at this scale, not whether the papers are right. FID at a few "
        "hundred samples is biased upwards and moves by a few points between seeds: margins of a few percent are "
        "within noise, so KID (unbiased) is given beside it as a second opinion.")


@dataclass(frozen=True)
class Claim:
    """A paper's ordering: entry ``a`` against entry ``b`` (families inside ``group``; ``b=None``: ``a``'s teacher,
    for every compressed entry) on the first of ``metrics`` (regexes) that both cards have.

    ``relation``: ``no_worse`` (a at least as good as b), ``better`` (strictly better) or ``within`` (a at most
    ``tolerance`` worse than b, relative to b)."""

    claim: str
    source: str
    group: str
    a: str
    b: str | None
    metrics: tuple[str, ...]
    relation: str
    tolerance: float = 0.0
    also: tuple[str, ...] = ()  # a second metric reported beside the first (not deciding the status)


FID, KID = (r"fid\d+k?(_full)?",), (r"kid\d+k?(_full)?",)
CLAIMS: list[Claim] = [
    Claim("PixelFolder ≤ StyleGAN2 (FID)", "PixelFolder (He et al., ECCV 2022, arXiv 2204.00833), Table 1",
          "unconditional-32", "pixelfolder", "stylegan2", FID, "no_worse", also=KID),
    Claim("StyleGAN2 < CIPS (FID)", "PixelFolder (He et al., ECCV 2022, arXiv 2204.00833), Table 1",
          "unconditional-32", "stylegan2", "cips", FID, "better", also=KID),
    Claim("StyleNAT ≤ StyleGAN2 (FID)", "StyleNAT (Walton et al., arXiv 2211.05770), FFHQ-256 comparison",
          "unconditional-32", "stylenat", "stylegan2", FID, "no_worse", also=KID),
    Claim("SPN ≤ full-image AR baseline (bits/dim)",
          "Subscale Pixel Networks (Menick & Kalchbrenner, ICLR 2019, arXiv 1812.01608)",
          "likelihood-32", "spn", "ar-decoder", (r"bpd\d*",), "no_worse"),
    Claim("ASAP-Net within 10% of pix2pixHD (fid_pairs)",
          "ASAP-Net (Rott Shaham et al., CVPR 2021, arXiv 2012.02992): comparable quality, 2-18× faster",
          "paired-32", "asapnet", "pix2pixhd", (r"fid_pairs",), "within", 0.10),
    Claim("student within 10% of its teacher (fid_pairs, else PSNR)",
          "Towards Device Efficient Conditional Image Generation (Shah & Bharaj, BMVC 2022, arXiv 2203.10363)",
          "*", "student", None, (r"fid_pairs", r"psnr"), "within", 0.10),
]


def higher_is_better(metric: str) -> bool:
    from leangen.metrics import metric_info

    try:
        return bool(metric_info(metric).higher_is_better)
    except (KeyError, ValueError):
        return bool(re.fullmatch(r"psnr|miou|pixel_acc|.*_(precision|recall)", metric))


def _pick(cards: list[dict[str, Any]], group: str, fam: str) -> dict[str, Any] | None:
    hits = [c for c in cards if c.get("group") == group and family(c) == fam and not c.get("teacher")]
    return min(hits, key=lambda c: c["name"]) if hits else None


def judge(claim: Claim, a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    """One claim on two cards: ``{"status": "held" | "not held" | "not measured", "metric", "a", "b", "worse",
    "margin", ...}``. ``worse``: how much worse a is than b, relative to b (negative: a is better)."""
    out: dict[str, Any] = dict(asdict(claim), entry_a=a and a["name"], entry_b=b and b["name"], metric=None,
                               value_a=None, value_b=None, worse=None)
    if a is None or b is None:
        missing = " and ".join(f"no {fam} entry" for fam, card in ((claim.a, a), (claim.b or "teacher", b))
                               if card is None)
        return dict(out, status="not measured", margin=f"{missing} in the zoo")
    ma, mb = a.get("metrics") or {}, b.get("metrics") or {}
    metric = _common_metric(claim.metrics, ma, mb)
    if metric is None:
        return dict(out, status="not measured", margin="no metric both entries measured")
    va, vb = float(ma[metric]), float(mb[metric])
    worse = _worse(metric, va, vb)
    held = {"no_worse": worse <= 0, "better": worse < 0, "within": worse <= claim.tolerance}[claim.relation]
    margin = _how_much(worse) + (f" (allowed: {claim.tolerance:.0%} worse)" if claim.relation == "within" else "")
    margin = f"{a['name']} {metric} {va:.4g} vs {b['name']} {vb:.4g}: {margin}"
    second = _common_metric(claim.also, ma, mb)
    if second is not None:
        sa, sb = float(ma[second]), float(mb[second])
        margin += f"; {second} {sa:.4g} vs {sb:.4g}: {_how_much(_worse(second, sa, sb))}"
    return dict(out, status="held" if held else "not held", metric=metric, value_a=va, value_b=vb, worse=worse,
                margin=margin)


def _common_metric(patterns: tuple[str, ...], ma: dict[str, Any], mb: dict[str, Any]) -> str | None:
    return next((k for pat in patterns for k in sorted(ma) if re.fullmatch(pat, k) and k in mb), None)


def _worse(metric: str, va: float, vb: float) -> float:
    """How much worse ``va`` is than ``vb``, relative to ``vb`` (negative: better)."""
    if not vb:
        return float("inf") if va != vb else 0.0
    return (vb - va if higher_is_better(metric) else va - vb) / abs(vb)


def _how_much(worse: float) -> str:
    return f"{abs(worse):.1%} {'worse' if worse > 0 else 'better' if worse < 0 else '(equal)'}"


def judge_all(cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name = {c["name"]: c for c in cards}
    out = []
    for claim in CLAIMS:
        if claim.b is None:  # every compressed entry against its teacher
            students = [c for c in cards if c.get("teacher")]
            out += [judge(claim, s, by_name.get(s["teacher"])) for s in students] or [judge(claim, None, None)]
        else:
            out.append(judge(claim, _pick(cards, claim.group, claim.a), _pick(cards, claim.group, claim.b)))
    return out


def samples_link(card: dict[str, Any]) -> str | None:
    """The entry's ``samples.png``, relative to the repository root (absolute when the zoo lies outside it)."""
    path = Path(card["path"]) / "samples.png"
    if not path.is_file():
        return None
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return str(path.resolve())


def row(card: dict[str, Any], metric_names: list[str]) -> dict[str, Any]:
    training = card.get("training") or {}
    seconds = training.get("seconds")
    return dict(name=card["name"], family=family(card), preset=card.get("preset"), data=card.get("data"),
                params=card.get("params"), kimg=training.get("kimg"), steps=training.get("steps"),
                minutes=seconds / 60 if isinstance(seconds, (int, float)) else None, device=training.get("device"),
                device_name=training.get("device_name"), teacher=card.get("teacher"), command=card.get("command"),
                train_command=card.get("train_command"), samples=samples_link(card),
                metrics={m: (card.get("metrics") or {}).get(m) for m in metric_names})


def build(cards: list[dict[str, Any]], zoo_dir: Path) -> dict[str, Any]:
    """The payload: groups (rows of every entry), claims (judged), environment and the command."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for card in sorted(cards, key=lambda c: (str(c.get("group")), c["name"])):
        groups.setdefault(str(card.get("group")), []).append(card)
    out = {}
    for group, members in groups.items():
        names = sorted({m for c in members for m in (c.get("metrics") or {})})
        out[group] = [row(c, names) for c in members]
    devices = sorted({str((c.get("training") or {}).get("device")) for c in cards})
    try:
        shown_dir = zoo_dir.resolve().relative_to(REPO).as_posix()
    except ValueError:
        shown_dir = str(zoo_dir)
    return dict(title="Model zoo quality and the papers' orderings", note=NOTE, zoo_dir=shown_dir,
                groups=out, claims=judge_all(cards), devices=devices,
                environment=dict(date=_dt.datetime.now().isoformat(timespec="seconds"),
                                 device=",".join(devices), argv=sys.argv[1:]),
                command="python benchmarks/quality.py")


def markdown(payload: dict[str, Any], base: str = "../") -> str:
    """The tables and claims. ``base``: path from the Markdown file to the repository root (``../`` from docs/,
    ``../../`` from benchmarks/results/), for the links to the sample grids."""
    lines = [f"# {payload['title']}", "", payload["note"], "",
             f"Cards from `{payload['zoo_dir']}` (`{payload['command']}`); each entry's `card.json` holds the "
             "command that reproduces it (`python benchmarks/zoo.py --only NAME`).", ""]
    if not payload["groups"]:
        lines += ["The zoo holds no entries yet: `python benchmarks/zoo.py` trains them.", ""]
    for group, rows in payload["groups"].items():
        names = sorted({m for r in rows for m in r["metrics"]})
        head = ["entry", "params", "kimg", "training (min)", "device", *names, "samples"]
        table = []
        for r in rows:
            link = r["samples"]
            link = "" if link is None else f"[png]({link if link.startswith('/') else base + link})"
            table.append([r["name"] + (f" (student of {r['teacher']})" if r.get("teacher") else ""),
                          fmt(r["params"], ","), fmt(r["kimg"], ".3g"), fmt(r["minutes"], ".1f"),
                          r.get("device") or "", *(fmt(r["metrics"].get(m), ".4g") for m in names), link])
        lines += [f"## {group}", "", md_table(head, table), ""]
    lines += ["## The papers' orderings", ""]
    claims = [[c["claim"], f"**{c['status']}**", c["margin"], c["source"]] for c in payload["claims"]]
    lines += [md_table(["claim", "here", "by how much", "source (the paper's own setting)"], claims, right_from=9)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo-dir", default=None, help="zoo folder (default: $LEANGEN_ZOO_DIR or the shipped zoo)")
    ap.add_argument("--tag", default=None, help="file tag (default: the cards' training device, e.g. cpu)")
    args = ap.parse_args(argv)
    from leangen import zoo

    zoo_dir = zoo.root(args.zoo_dir)
    cards = zoo.cards(zoo_dir)
    payload = build(cards, zoo_dir)
    tag = args.tag or device_tag(payload["devices"], cards)
    jpath, mpath = write_results("quality", tag, payload, markdown(payload, base="../../"))
    for c in payload["claims"]:
        print(f"{c['status']:>12s}  {c['claim']}: {c['margin']}")
    print(f"wrote {jpath} and {mpath} ({len(cards)} entries)", file=sys.stderr)
    return 0


def device_tag(devices: list[str], cards: list[dict[str, Any]]) -> str:
    """``cpu``, a GPU model (``h200``) when every card trained on the same kind of GPU, else ``mixed``."""
    kinds = {d.split(":")[0] for d in devices}
    if kinds == {"cuda"}:
        names = {str((c.get("training") or {}).get("device_name", "")).lower() for c in cards}
        models = {m.group(1) for n in names if (m := re.search(r"\b([a-z]{1,2}\d{2,4}[a-z]?)\b", n))}
        return models.pop() if len(models) == 1 else "cuda"
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "cpu")


if __name__ == "__main__":
    sys.exit(main())
