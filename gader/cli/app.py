"""Root of the ``gader`` command: sub-command registration and the one place errors become messages.

Every error a user can cause ends as one line on stderr and a non-zero exit status, never a traceback:
``GaderError`` (bad input) exits 1, a usage error (unknown option, bad choice) exits 2.
"""

from __future__ import annotations

import sys

import typer
from typer.exceptions import Abort, TyperException

from gader.cli import (
    data_commands,
    detector_commands,
    eval_commands,
    model_commands,
    pipeline_commands,
    synth_commands,
    video_commands,
)
from gader.errors import GaderError
from service import cli as service_cli  # the service's commands (their web imports happen when they run)

app = typer.Typer(
    name="gader",
    help="GADER gait detection and recognition: data, evaluation, models and the matching service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_commands.app, name="data")
app.add_typer(synth_commands.app, name="synth")
app.add_typer(model_commands.train_app, name="train")
app.command("eval")(model_commands.evaluate)
app.command("import-opengait")(model_commands.import_opengait)
app.command("export")(model_commands.export)
app.command("triton-local")(model_commands.triton_local)
app.command("calibrate-fusion")(pipeline_commands.calibrate_fusion)
model_commands.train_app.command("detector")(detector_commands.train_detector)
app.command("eval-detector")(detector_commands.eval_detector)
app.command("detect")(detector_commands.detect)
app.command("compare")(pipeline_commands.compare)
app.command("extract")(video_commands.extract)
app.command("prepare")(video_commands.prepare)
service_cli.register(app)
eval_commands.register(app)


def _fail(message: str, status: int) -> None:
    print(f"gader: error: {message}", file=sys.stderr)
    sys.exit(status)


def main(argv: list[str] | None = None) -> None:
    command = typer.main.get_command(app)
    try:
        status = command.main(args=argv, prog_name="gader", standalone_mode=False)
    except Abort:
        _fail("aborted", 130)
    except TyperException as exc:  # usage errors: unknown option, bad choice, missing argument
        message = exc.format_message().replace("\n", " ").replace("\t", "").strip()
        if not message:  # no arguments at all: typer has printed the help already
            sys.exit(exc.exit_code)
        _fail(message, exc.exit_code)
    except GaderError as exc:
        _fail(str(exc), 1)
    except OSError as exc:  # a path the command was given: missing folder, a file where a folder goes, no permission
        _fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    sys.exit(status if isinstance(status, int) else 0)
