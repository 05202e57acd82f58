"""Claims: an experiment's findings as predicates over its summary table, checked on any machine.

A claim (``rnnlab.experiment.schema.Claim``) in an experiment file::

    claims:
      - says: "plain BPTT learns recall up to T = 6 on every seed"
        where: "seq_len <= 6"          # the rows the claim is about (empty: every row)
        expect: "solved_lo >= 0.7"     # true on each of them...
        holds: all                     # ...on all (default), on any, or on none of them

is evaluated on the summary table of a results folder (:func:`rnnlab.analysis.summarize.summarize`,
with its intervals). Outcomes of training differ in their digits between floating-point stacks; a
claim states what must stay true whatever the stack, so ``rnnlab check`` on a reproduction made
on another machine answers "does the finding hold?", not "are the digits equal?".

Expressions are a small, safe subset of Python: column names (``task.seq_len``, or ``seq_len``
where the last part is unambiguous), numbers, strings, ``True``/``False``, comparisons (chains
too: ``0.2 <= acc <= 0.8``), ``and``/``or``/``not``, ``+ - * /``, ``in (a, b)``, and the
functions ``abs``, ``min``, ``max``, ``log10``, ``isnan``. A missing value (NaN) makes every
comparison false, so a claim never holds by a blank cell. A claim whose ``where`` selects no row
does not hold.

A name its table will not have is refused when the experiment is loaded (``rnnlab validate``, and
``rnnlab sweep`` before it trains): :func:`table_columns` gives the columns from the code that
builds the tables, for the experiment's swept keys, tasks and analyses.
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from rnnlab.analysis.limits import OVER, budget_columns, limit_columns
from rnnlab.analysis.summarize import format_value, summary_columns
from rnnlab.errors import ConfigError
from rnnlab.experiment.schema import leaf_fields
from rnnlab.tasks import ACCURACY_CRITERIA, CRITERIA_TASKS

EXPR_ALLOWED = ("an expression over summary columns with numbers, strings, comparisons, "
                "and/or/not, + - * /, in, abs, min, max, log10, isnan")

_FUNCS: dict[str, Callable] = {
    "abs": abs, "min": min, "max": max,
    "log10": lambda x: math.log10(x) if x > 0 else (-math.inf if x == 0 else math.nan),
    "isnan": lambda x: isinstance(x, float) and math.isnan(x),
}
_CONSTS = {"True": True, "False": False, "None": None, "inf": math.inf, "nan": math.nan}
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv}
_CMPOPS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
           ast.Eq: operator.eq, ast.NotEq: operator.ne}


class ClaimError(ConfigError):
    """A malformed claim: names the experiment file, the claim and what is allowed."""


def _dotted(node: ast.AST) -> str | None:
    """``task.seq_len`` for an Attribute chain of Names, the name for a Name, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def parse(text: str, source: str, where: str) -> ast.Expression:
    """The checked syntax tree of an expression; ClaimError naming ``source`` and ``where``."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise ClaimError(source, where, text, EXPR_ALLOWED, "not a valid expression") from None
    for node in ast.walk(tree):
        ok = isinstance(node, ast.Expression | ast.BoolOp | ast.And | ast.Or | ast.UnaryOp
                        | ast.Not | ast.USub | ast.UAdd | ast.Compare | ast.BinOp | ast.Load
                        | ast.Tuple | ast.List | ast.In | ast.NotIn | ast.Name | ast.Attribute
                        | ast.Call) or type(node) in _BINOPS or type(node) in _CMPOPS
        if isinstance(node, ast.Constant):
            ok = isinstance(node.value, int | float | str | bool) or node.value is None
        if isinstance(node, ast.Attribute) and _dotted(node) is None:
            ok = False
        if isinstance(node, ast.Call):
            ok = isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords
        if not ok:
            what = type(node).__name__
            raise ClaimError(source, where, text, EXPR_ALLOWED, f"{what} is not allowed")
    return tree


def names(tree: ast.Expression) -> list[str]:
    """Column names an expression reads (dotted chains whole), in order of appearance."""
    out: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Call):
            for a in node.args:
                visit(a)
            return
        dotted = _dotted(node)
        if dotted is not None:
            if dotted not in _CONSTS and dotted not in out:
                out.append(dotted)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree.body)
    return out


def check_claim(claim, source: str, where: str) -> None:
    """Parse a claim's expressions at load time, so a malformed one is refused up front."""
    parse(claim.expect, source, f"{where}.expect")
    if claim.where.strip():
        parse(claim.where, source, f"{where}.where")


#: At most this many column names are listed in an error's "allowed" text.
SHOWN_COLUMNS = 40


def table_columns(table: str, swept_keys: list[str], configs) -> list[str]:
    """The columns the ``table`` a claim names will have for runs with the configurations
    ``configs`` (``RunConfig``s) swept over ``swept_keys``, from the code that builds the tables:
    the summary (:func:`rnnlab.analysis.summarize.summary_columns`: the accuracy criteria when a
    run's task has them, the Lyapunov columns when a run computes them) or the limit map's budget
    and limit tables. A limit map needs ``task.seq_len`` swept and ``train.steps`` not: otherwise
    the table cannot be made, and the result is None."""
    if table == "summary":
        criteria = ACCURACY_CRITERIA if any(c.task.name in CRITERIA_TASKS for c in configs) else ()
        lyapunov = any(c.train.lyapunov.enabled for c in configs)
        return summary_columns(swept_keys, criteria, lyapunov)
    if OVER not in swept_keys or "train.steps" in swept_keys:
        return None
    return budget_columns(swept_keys) if table == "budget" else limit_columns(swept_keys, OVER)


def check_names(claim, columns: list[str], source: str, at: str) -> dict[str, str]:
    """Every name the claim's ``where`` and ``expect`` read, resolved to a column of its table
    (``columns``): {name: column}. A name that is none is a ClaimError naming ``source``,
    ``at.where`` or ``at.expect``, the name and the columns (at most :data:`SHOWN_COLUMNS`)."""
    used = {}
    for label, text in (("expect", claim.expect), ("where", claim.where)):
        if label == "where" and not text.strip():
            continue
        for name in names(parse(text, source, f"{at}.{label}")):
            col = _resolve(name, columns)
            if col is None:
                raise ClaimError(source, f"{at}.{label}", name, _columns_allowed(claim.table,
                                                                                 columns),
                                 _name_hint(name, columns))
            used[name] = col
    return used


def _columns_allowed(table: str, columns: list[str]) -> str:
    shown_cols = columns[:SHOWN_COLUMNS]
    more = len(columns) - len(shown_cols)
    dotted = " (a dotted key also by its last part if unambiguous)" if any(
        "." in c for c in columns) else ""
    text = f"a column of the {table} table{dotted}: " + ", ".join(shown_cols)
    return text + (f" and {more} more" if more else "")


def _name_hint(name: str, columns: list[str]) -> str:
    """Why a key of the configuration is not a column (it is not swept), else "did you mean" a
    close column."""
    keys = [k for k in leaf_fields() if name in (k, k.rsplit(".", 1)[-1])]
    if keys:
        return f"{keys[0]} is not swept, so no table has a column for it"
    short = [c.rsplit(".", 1)[-1] for c in columns]
    match = difflib.get_close_matches(name, [*columns, *short], n=1)
    return f"did you mean {match[0]}?" if match else ""


def _resolve(name: str, columns: list[str]) -> str | None:
    if name in columns:
        return name
    matches = [c for c in columns if c.rsplit(".", 1)[-1] == name]
    return matches[0] if len(matches) == 1 else None


def _value(v: Any) -> Any:
    if v is None or v is pd.NA:
        return math.nan
    if hasattr(v, "item"):
        v = v.item()
    return v


def _eval(node: ast.AST, row: dict) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body, row)
    if isinstance(node, ast.Constant):
        return node.value
    dotted = _dotted(node)
    if dotted is not None:
        return _CONSTS[dotted] if dotted in _CONSTS else row[dotted]
    if isinstance(node, ast.BoolOp):
        values = (bool(_eval(v, row)) for v in node.values)
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, row)
        return (not v) if isinstance(node.op, ast.Not) else (-v if isinstance(node.op, ast.USub)
                                                              else v)
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, row), _eval(node.right, row)
        try:
            return _BINOPS[type(node.op)](a, b)
        except ZeroDivisionError:
            return math.nan
    if isinstance(node, ast.Compare):
        left = _eval(node.left, row)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, row)
            if isinstance(op, ast.In | ast.NotIn):
                hit = left in right
                ok = hit if isinstance(op, ast.In) else not hit
            else:
                try:
                    ok = _CMPOPS[type(op)](left, right)
                except TypeError:           # a number against a string: not equal, not ordered
                    ok = isinstance(op, ast.NotEq)
            if not ok:
                return False
            left = right
        return True
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(_eval(e, row) for e in node.elts)
    if isinstance(node, ast.Call):
        return _FUNCS[node.func.id](*(_eval(a, row) for a in node.args))
    raise TypeError(type(node).__name__)


@dataclass
class ClaimResult:
    """The verdict on one claim: whether it holds and the observed values it rests on."""

    says: str
    expect: str
    where: str
    holds_on: str
    holds: bool
    observed: str
    rows: int

    def line(self) -> str:
        """One line: verdict, the claim in words, the predicate and the observed values."""
        scope = f" where {self.where}" if self.where else ""
        quant = {"all": "", "any": " (on some row)", "none": " (on no row)"}[self.holds_on]
        return (f"{'PASS' if self.holds else 'FAIL'}  {self.says}  [{self.expect}{quant}{scope}; "
                f"{self.observed}]")


def evaluate(claims, table_of: Callable[[str, int | None], pd.DataFrame], source: str,
             prefix: str = "claims") -> list[ClaimResult]:
    """Evaluate ``claims`` on the tables ``table_of(claim.table, claim.step)`` (called once per
    table and step): the summary, or the limit map's ``budget`` and ``limit`` tables.

    A name that is not a column of the table is a ClaimError naming ``source`` and the claim.
    """
    tables: dict[tuple[str, int | None], pd.DataFrame] = {}
    results = []
    for i, claim in enumerate(claims):
        at = f"{prefix}[{i}]"
        which = (claim.table, claim.step)
        if which not in tables:
            tables[which] = table_of(*which)
        table = tables[which]
        columns = [str(c) for c in table.columns]
        used = check_names(claim, columns, source, at)
        expect = parse(claim.expect, source, f"{at}.expect")
        where = parse(claim.where, source, f"{at}.where") if claim.where.strip() else None
        shown_cols = list(dict.fromkeys(used[n] for n in names(expect)))
        keys = [c for c in columns if "." in c or c == "budget"]    # what names a row
        verdicts, notes = [], []
        for rec in table.to_dict("records"):
            row = {name: _value(rec[col]) for name, col in used.items()}
            if where is not None and not bool(_eval(where, row)):
                continue
            ok = bool(_eval(expect, row))
            verdicts.append(ok)
            label = ",".join(f"{c.rsplit('.', 1)[-1]}={format_value(rec[c])}" for c in keys
                             if c not in shown_cols)
            vals = " ".join(f"{c.rsplit('.', 1)[-1]}={format_value(rec[c])}" for c in shown_cols)
            notes.append((ok, f"{label + ': ' if label else ''}{vals}"))
        if not verdicts:
            holds, observed = False, "no row matches"
        else:
            holds = {"all": all(verdicts), "any": any(verdicts),
                     "none": not any(verdicts)}[claim.holds]
            # the rows that decide the verdict first: the failing ones of "all", the true ones
            # of "any" and "none"
            first = [n for ok, n in notes if ok != (claim.holds == "all")]
            rest = [n for ok, n in notes if ok == (claim.holds == "all")]
            listed = (first + rest)[:6]
            observed = "; ".join(listed) + (f"; ... ({len(notes)} rows)"
                                            if len(notes) > len(listed) else "")
        results.append(ClaimResult(claim.says, claim.expect, claim.where.strip(), claim.holds,
                                   holds, observed, len(verdicts)))
    return results
