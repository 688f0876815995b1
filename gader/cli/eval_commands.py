"""``gader eval-embeddings``: run an evaluation protocol on saved embeddings."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer
from rich.table import Table

from gader import plots, protocols
from gader.cli.output import console, print_json


class Protocol(StrEnum):
    casia_b = "casia-b"
    open_set = "open-set"
    verification = "verification"


class Distance(StrEnum):
    euc = "euc"
    cos = "cos"


def register(app: typer.Typer) -> None:
    app.command("eval-embeddings")(eval_embeddings)


def eval_embeddings(
    file: Path = typer.Argument(
        ..., help=".npz with embeddings [N, D] or [N, P, D], subjects, conditions, views, is_probe."
    ),
    protocol: Protocol = typer.Option(..., "--protocol", help="Which evaluation to run."),
    distance: Distance = typer.Option(
        Distance.euc, "--distance", help="euc: OpenGait's per-part Euclidean mean; cos: cosine."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (percentages 0-100)."),
    plot: Path | None = typer.Option(None, "--plot", help="Directory to write PNG curves into."),
) -> None:
    """Evaluate embeddings: CASIA-B rank-1 per view, open-set retrieval, or verification (TAR@FAR, EER)."""
    data = protocols.load_embedding_set(file)
    result = protocols.evaluate(data, protocol.value, distance.value)
    if plot is not None:
        written = write_plots(result, plot)
        for path in written:
            typer.echo(f"wrote {path}", err=True)
    if as_json:
        print_json(result.summary)
    else:
        _print_table(protocol.value, result.summary)


def write_plots(result, directory: Path) -> list[Path]:
    """The PNGs that go with a protocol result."""
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(result, protocols.CasiaResult):
        names = list(protocols.CASIA_PROBE_CONDITIONS)
        return [
            plots.plot_cmc(result.cmc, directory / "cmc.png", title="CASIA-B CMC (cross-view mean)"),
            plots.plot_view_matrix(result.accuracy[..., 0], result.views, names, directory / "view_matrix.png"),
        ]
    if isinstance(result, protocols.OpenSetResult):
        return [plots.plot_cmc({"open-set": result.ranking.cmc}, directory / "cmc.png")]
    return [
        plots.plot_det({"verification": result.roc}, directory / "det.png"),
        plots.plot_roc({"verification": result.roc}, directory / "roc.png"),
    ]


def _print_table(protocol: str, summary: dict) -> None:
    title = f"{protocol} ({summary['metric']} distance)"
    table = Table(title=title, min_width=len(title) + 4)  # a two-column table would otherwise fold its title
    if protocol == "casia-b":
        table.add_column("condition")
        table.add_column("rank-1 %", justify="right")
        table.add_column("rank-5 %", justify="right")
        for name in protocols.CASIA_PROBE_CONDITIONS:
            table.add_row(name, _fmt(summary["rank1"][name]), _fmt(summary["rank5"][name]))
        table.add_row("mean", _fmt(summary["rank1"]["mean"]), "")
    elif protocol == "open-set":
        for key in ("rank1", "rank5", "rank10", "mAP", "mINP"):
            table.add_column(key, justify="right")
        table.add_row(*(_fmt(summary[key]) for key in ("rank1", "rank5", "rank10", "mAP", "mINP")))
    else:
        table.add_column("FAR")
        table.add_column("TAR %", justify="right")
        for far, tar in summary["tar_at_far"].items():
            table.add_row(far, _fmt(tar))
        table.add_row("EER %", _fmt(summary["eer"]))
    console.print(table)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"
