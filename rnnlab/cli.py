"""rnnlab's command line: thin commands over the library.

Each command parses its arguments, calls the library and renders the result. Library errors a user
can cause (``UserError``, ``ValueError`` from argument checks) become one line on stderr and exit
status 2; human tables go to stdout, diagnostics to stderr; NO_COLOR is respected by rich.
"""

from __future__ import annotations

import functools
import sys
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from .errors import UserError

app = typer.Typer(
    name="rnnlab",
    help="A laboratory for the gradient dynamics of recurrent networks (BPTT in NumPy).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 2):
    """One line on stderr, then exit: the boundary where library errors become CLI errors."""
    err.print(f"rnnlab: error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(code)


def user_errors(fn):
    """Turn UserError into a clean one-line error with exit status 2 (no traceback)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            fail(str(e))
    return wrapper


@app.callback()
def main():
    """rnnlab: run BPTT experiments and see how gradients flow through time."""


@app.command()
@user_errors
def gradcheck(
    cell: Annotated[Literal["rnn", "lstm"], typer.Option(help="Recurrent cell.")] = "rnn",
    activation: Annotated[Literal["tanh", "relu", "sigmoid", "identity"],
                          typer.Option(help="phi of the rnn cell.")] = "tanh",
    output: Annotated[Literal["softmax", "linear"], typer.Option(help="Output head.")] = "softmax",
    loss: Annotated[Literal["mse", "ce"], typer.Option(help="Loss.")] = "mse",
    loss_at: Annotated[Literal["last", "all"], typer.Option(help="Loss steps.")] = "last",
    seq_len: Annotated[int, typer.Option(min=1, max=200, help="Time steps T.")] = 6,
    hidden: Annotated[int, typer.Option(min=1, max=64, help="Hidden units H.")] = 4,
    batch: Annotated[int, typer.Option(min=1, max=64, help="Sequences per batch B.")] = 3,
    truncate: Annotated[int | None, typer.Option(min=1, help="BPTT(k) window.")] = None,
    clip_step: Annotated[float | None, typer.Option(min=0.0, help="Per-step error clip.")] = None,
    runs: Annotated[int | None, typer.Option(min=1, max=16, help="Check R runs at once.")] = None,
    scale: Annotated[float, typer.Option(min=0.0, help="Recurrent weight scale.")] = 1.0,
    seed: Annotated[int, typer.Option(min=0, help="Random seed.")] = 0,
    tolerance: Annotated[float, typer.Option(min=0.0, help="Largest relative error.")] = 1e-6,
):
    """Check the engine's gradients against central finite differences (float64).

    Prints the worst relative error per parameter; exit status 1 if any exceeds the tolerance.
    """
    from .gradcheck import check

    try:
        res = check(cell=cell, activation=activation, output=output, loss=loss, loss_at=loss_at,
                    truncate=truncate, clip_step=clip_step, seq_len=seq_len, batch=batch,
                    hidden=hidden, runs=runs, scale=scale, seed=seed, tolerance=tolerance)
    except ValueError as e:
        fail(str(e))
    table = Table(title=f"gradient check: {cell} {activation if cell == 'rnn' else ''} "
                        f"{output}/{loss} loss_at={loss_at} T={seq_len}")
    table.add_column("param")
    table.add_column("max rel. error", justify="right")
    table.add_column("ok", justify="center")
    for name, e in res.errors.items():
        table.add_row(name, f"{e:.2e}", "yes" if e < tolerance else "NO")
    out.print(table)
    if not res.ok:
        err.print(f"rnnlab: gradient check failed (tolerance {tolerance:g})")
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
