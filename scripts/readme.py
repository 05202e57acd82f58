"""Write the README's findings from the committed results, so the prose cannot drift from the data.

    python scripts/readme.py           # rewrite the generated blocks of README.md
    python scripts/readme.py --check   # exit 1 if README.md differs from what would be written

README.md holds blocks between ``<!-- begin: KIND NAME -->`` and ``<!-- end: KIND NAME -->``:

- ``claims NAME``: every claim of experiments/NAME.yaml, in words, with its predicate and whether it
  holds on the committed table results/NAME/summary.csv;
- ``table NAME``: the small table of the experiment that the README shows (``TABLES`` below), its
  cells from the same summary.csv, intervals in brackets;
- ``limits NAME``: the limit map's table results/NAME/limit.csv (``rnnlab limits``) as one row
  per setting and one column per training budget, each cell the limit with its 95 % interval
  (``> T`` when it lies beyond the longest T of the grid, ``< T`` below the shortest).

Everything else in the README is written by hand and carries no number from a result.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path

import pandas as pd

from rnnlab.analysis.summarize import display_cells, format_value
from rnnlab.experiment.check import check_folder

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"(<!-- begin: (\w+) ([\w-]+) -->\n)(.*?)(<!-- end: \2 \3 -->)", re.S)

#: name -> (the key whose values make the columns, [(row label, column or "solved_ci")]),
#: optionally restricted to the summary rows matching a pandas query.
TABLES: dict[str, tuple[str, list[tuple[str, str]], str | None]] = {
    "vanishing": ("task.seq_len", [
        ("solved fraction [95% interval]", "solved_ci"),
        ("log10 ds_1/ds_T at init", "grad_ratio"),
        ("gradient horizon (steps)", "horizon"),
    ], None),
}


def _interval(row: pd.Series, mid: str, lo: str, hi: str) -> str:
    if pd.isna(row[lo]) or pd.isna(row[hi]):
        return format_value(row[mid])
    return f"{format_value(row[mid])} [{row[lo]:.2f}, {row[hi]:.2f}]"


def table_block(name: str) -> str:
    key, rows, query = TABLES[name]
    summary = pd.read_csv(ROOT / "results" / name / "summary.csv")
    if query:
        summary = summary.query(query)
    cells = display_cells(summary)
    col = {c: i for i, c in enumerate(summary.columns)}
    short = key.rsplit(".", 1)[-1]
    lines = [f"| {short} | " + " | ".join(format_value(v) for v in summary[key]) + " |",
             "|---|" + "--:|" * len(summary)]
    for label, column in rows:
        if column == "solved_ci":
            values = [_interval(r, "solved", "solved_lo", "solved_hi")
                      for _, r in summary.iterrows()]
        else:
            values = [c[col[column]] for c in cells]
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def limits_block(name: str) -> str:
    table = pd.read_csv(ROOT / "results" / name / "limit.csv", keep_default_na=False,
                        na_values=[""])
    setting = list(table.columns[:list(table.columns).index("budget")])
    budgets = sorted(table["budget"].unique())
    lines = ["| " + (", ".join(c.rsplit(".", 1)[-1] for c in setting) or "setting")
             + " | " + " | ".join(f"{b} steps" for b in budgets) + " |",
             "|---|" + "--:|" * len(budgets)]
    groups = table.groupby(setting, sort=True) if setting else [((), table)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        cells = []
        for b in budgets:
            r = g[g["budget"] == b].iloc[0]
            if r["censored"] == "above":
                cells.append(f"> {format_value(r['limit'])}")
            elif r["censored"] == "below":
                cells.append(f"< {format_value(r['limit'])}")
            else:
                hi = "inf" if not math.isfinite(r["limit_hi"]) else f"{r['limit_hi']:.1f}"
                cells.append(f"{r['limit']:.1f} [{r['limit_lo']:.1f}, {hi}]")
        lines.append("| " + ", ".join(format_value(v) for v in key) + " | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines) + "\n"


def claims_block(name: str) -> str:
    results = check_folder(ROOT / "results" / name, file=ROOT / "experiments" / f"{name}.yaml")
    lines = []
    for r in results:
        scope = f" where `{r.where}`" if r.where else ""
        quant = {"all": "", "any": " (on some row)", "none": " (on no row)"}[r.holds_on]
        mark = "holds" if r.holds else "**does not hold**"
        lines.append(f"- {r.says} <sub>(`{r.expect}`{quant}{scope}: {mark})</sub>")
    return "\n".join(lines) + "\n"


def render(text: str) -> str:
    def block(m: re.Match) -> str:
        kind, name = m.group(2), m.group(3)
        body = {"claims": claims_block, "table": table_block, "limits": limits_block}[kind](name)
        return m.group(1) + body + m.group(5)

    return BLOCK.sub(block, text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = ap.parse_args()
    old = README.read_text()
    new = render(old)
    if args.check:
        if new != old:
            print("README.md differs from the committed results: run python scripts/readme.py",
                  file=sys.stderr)
            raise SystemExit(1)
        return
    README.write_text(new)


if __name__ == "__main__":
    main()
