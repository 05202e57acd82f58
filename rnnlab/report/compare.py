"""Two results folders side by side: ``rnnlab compare A B``.

The summaries of both folders (``rnnlab.analysis.summarize.summary_of``) are joined on their
grouping keys (``by``, default the keys swept in both). For every statistic a row holds A's and
B's value, with their bounds where the summary has them (``solved_lo``/``solved_hi``, ...), and a
mark:

* a statistic with an interval on both sides is marked when the two intervals do not overlap
  (``hi_A < lo_B`` or ``hi_B < lo_A``);
* a statistic without one is marked when the values differ as printed (4 significant digits, the
  precision of summary.csv; missing equals missing).

Rows present on one side only are kept (``present`` says which). The claims each experiment
states are checked on its own folder (``rnnlab check``) and shown side by side. The manifests
are compared key by key (nested keys dotted: ``blas.blas``, ``experiment.train.lr``);
``created`` and ``command`` differ between any two sweeps and are left out, and so are the
variables of ``fp_stack.env`` that change no number (``sysinfo.IGNORED_ENV``, recorded by older
manifests: the engine that ran is ``fp_stack.engine``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import pandas as pd

from rnnlab.analysis.summarize import format_value
from rnnlab.errors import UserError
from rnnlab.report.tables import FOLDED, intervals
from rnnlab.results.sysinfo import IGNORED_ENV

SKIP_MANIFEST = ("created", "command")
#: Dotted manifest keys left out of the comparison besides ``SKIP_MANIFEST``'s.
SKIP_KEYS = tuple(f"fp_stack.env.{k}" for k in IGNORED_ENV)
SIDES = ("a", "b")


@dataclass
class Comparison:
    """The joined summaries and the manifest differences of folders ``a`` and ``b``."""

    a: str
    b: str
    keys: list[str]
    table: pd.DataFrame              # keys, present, <stat>_a, <stat>_b, ..., <base>_differs
    stats: list[str]                 # base statistics compared (interval bounds folded in)
    manifest: list[dict] = field(default_factory=list)   # {"key", "a", "b"} where they differ
    notes: list[str] = field(default_factory=list)
    claims: list[dict] = field(default_factory=list)     # {"says", "a", "b"}: PASS, FAIL or None

    @property
    def marks(self) -> int:
        return int(sum(self.table[f"{c}_differs"].sum() for c in self.stats))

    def side(self, which: str) -> pd.DataFrame:
        """One side as a summary-shaped frame (keys and that side's statistics)."""
        cols = [c for c in self.table.columns if c.endswith(f"_{which}")]
        frame = self.table[self.keys + cols].copy()
        return frame.rename(columns={c: c[: -len(which) - 1] for c in cols})

    def to_json(self) -> str:
        from rnnlab.analysis.summarize import json_value

        rows = [{str(k): json_value(v) for k, v in row.items()}
                for row in self.table.to_dict(orient="records")]
        return json.dumps({"a": self.a, "b": self.b, "by": self.keys, "marks": self.marks,
                           "rows": rows, "manifest": self.manifest, "claims": self.claims,
                           "notes": self.notes},
                          indent=2) + "\n"


def _differs(a, b) -> bool:
    return format_value(a) != format_value(b)


def _overlap_differs(a, a_lo, a_hi, b, b_lo, b_hi) -> bool:
    bounds = [a_lo, a_hi, b_lo, b_hi]
    if any(x is None or (isinstance(x, float) and math.isnan(x)) for x in bounds):
        return _differs(a, b)
    return bool(a_hi < b_lo or b_hi < a_lo)


def flatten(doc, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists become their JSON text."""
    out = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(doc, list):
        return {prefix[:-1]: json.dumps(doc)}
    return {prefix[:-1]: doc}


def _compared(doc: dict) -> dict:
    return {k: v for k, v in flatten(doc).items()
            if k.split(".")[0] not in SKIP_MANIFEST and k not in SKIP_KEYS}


def manifest_differences(a: dict, b: dict) -> list[dict]:
    fa, fb = _compared(a), _compared(b)
    return [{"key": k, "a": fa.get(k), "b": fb.get(k)}
            for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def compare(a: str | os.PathLike, b: str | os.PathLike, by: list[str] | None = None,
            step: int | None = None) -> Comparison:
    """Join the summaries of results folders ``a`` and ``b`` (module docstring)."""
    from rnnlab.notebook import Results

    ra, rb = Results(a), Results(b)
    notes = []
    if by is None:
        keys = [k for k in ra.swept_keys if k in rb.swept_keys]
        only = sorted(set(ra.swept_keys) ^ set(rb.swept_keys))
        if only:
            notes.append(f"swept on one side only, pooled: {', '.join(only)}")
    else:
        keys = list(dict.fromkeys(by))
    sa, sb = ra.summary(by=keys, step=step), rb.summary(by=keys, step=step)
    common = [c for c in sa.columns if c in sb.columns and c not in keys]
    bounds = {x for pair in intervals(common).values() for x in pair}
    stats = [c for c in common if c not in bounds and c not in FOLDED]
    sa, sb = sa.assign(_in_a=True), sb.assign(_in_b=True)
    if keys:                                    # A's row order, then B's rows A does not have
        sa["_order_a"], sb["_order_b"] = range(len(sa)), range(len(sb))
        try:
            joined = sa[keys + common + ["_in_a", "_order_a"]].merge(
                sb[keys + common + ["_in_b", "_order_b"]], on=keys, how="outer",
                suffixes=("_a", "_b"))
        except ValueError as e:                 # e.g. a key that is text on one side only
            raise UserError(f"cannot join {a} and {b} on {', '.join(keys)}: {e}; choose the "
                            "keys with --by") from None
        joined = joined.sort_values(["_order_a", "_order_b"], na_position="last",
                                    kind="mergesort").reset_index(drop=True)
    else:
        joined = pd.concat([sa[common + ["_in_a"]].add_suffix("_a").rename(
            columns={"_in_a_a": "_in_a"}), sb[common + ["_in_b"]].add_suffix("_b").rename(
            columns={"_in_b_b": "_in_b"})], axis=1)
    present = ["both" if x is True and y is True else "a" if x is True else "b"
               for x, y in zip(joined["_in_a"], joined["_in_b"], strict=True)]
    out = joined[keys].copy() if keys else pd.DataFrame(index=joined.index)
    out["present"] = present
    pairs = intervals(common)
    for c in stats + [f for f in FOLDED if f in common]:
        group = [c, *pairs.get(c, ())]
        for side in SIDES:
            for g in group:
                out[f"{g}_{side}"] = joined[f"{g}_{side}"]
    for c in stats:
        marks = []
        for i in range(len(joined)):
            row = joined.iloc[i]
            if present[i] != "both":
                marks.append(False)
            elif c in pairs:
                lo, hi = pairs[c]
                marks.append(_overlap_differs(row[f"{c}_a"], row[f"{lo}_a"], row[f"{hi}_a"],
                                              row[f"{c}_b"], row[f"{lo}_b"], row[f"{hi}_b"]))
            else:
                marks.append(_differs(row[f"{c}_a"], row[f"{c}_b"]))
        out[f"{c}_differs"] = marks
    for side, name in (("a", a), ("b", b)):
        n = sum(p == side for p in present)
        if n:
            notes.append(f"{n} row(s) only in {name}")
    if not len(out):
        raise UserError(f"{a} and {b}: nothing to compare")
    return Comparison(str(a), str(b), keys, out.reset_index(drop=True), stats,
                      manifest_differences(ra.manifest, rb.manifest), notes,
                      claim_verdicts(ra, rb, notes))


def claim_verdicts(ra, rb, notes: list[str]) -> list[dict]:
    """Each side's verdict on the claims its own experiment states (``rnnlab check``), joined on
    the claim's words; None where a side does not state the claim."""
    from rnnlab.experiment.check import check_folder

    verdicts: dict[str, dict] = {}
    for side, r in zip(SIDES, (ra, rb), strict=True):
        if not (r.manifest.get("experiment") or {}).get("claims"):
            continue
        try:
            results = check_folder(r.path)
        except UserError as e:
            notes.append(f"claims of {r.path} not checked: {e}")
            continue
        for res in results:
            row = verdicts.setdefault(res.says, {"says": res.says, "a": None, "b": None})
            row[side] = "PASS" if res.holds else "FAIL"
    return list(verdicts.values())


def stacked(cmp: Comparison) -> tuple[pd.DataFrame, dict[str, list[bool]]]:
    """Rows A, B, A, B, ... (column ``side``) with the statistics of each, for a terminal view,
    and per statistic the rows to mark (B's row where the two sides differ)."""
    a, b = cmp.side("a"), cmp.side("b")
    a.insert(len(cmp.keys), "side", "A")
    b.insert(len(cmp.keys), "side", "B")
    frame = pd.concat([a, b]).sort_index(kind="mergesort").reset_index(drop=True)
    marks = {}
    for c in cmp.stats:
        flags = cmp.table[f"{c}_differs"].tolist()
        marks[c] = [f for pair in zip([False] * len(flags), flags, strict=True) for f in pair]
    return frame, marks


def markdown_table(cmp: Comparison) -> pd.DataFrame:
    """The comparison for people: per statistic one cell, ``A`` where both sides print the same,
    else ``A -> B``, with ``*`` where they are marked; intervals as in the terminal."""
    from rnnlab.report.tables import cell_texts, interval_cells

    sides = {}
    for which in SIDES:
        side = cmp.side(which)
        texts = cell_texts(side)
        sides[which] = {c: interval_cells(side, c, texts) if c in intervals(side.columns)
                        else texts[c] for c in cmp.stats}
    out = cmp.table[cmp.keys + ["present"]].copy()
    for c in cmp.stats:
        cells = []
        for i, mark in enumerate(cmp.table[f"{c}_differs"]):
            a, b = sides["a"][c][i], sides["b"][c][i]
            text = a if a == b else f"{a} -> {b}"
            cells.append(f"{text} *" if mark else text)
        out[c] = cells
    return out
