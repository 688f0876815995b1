"""``gader train gar``, ``gader eval``: train GAR models and evaluate them on datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from gader.cli.eval_commands import Distance, Protocol, _print_table, write_plots
from gader.cli.output import err_console, print_json
from gader.errors import GaderError

train_app = typer.Typer(help="Train models.", no_args_is_help=True)


@train_app.command("gar")
def train_gar(
    config: Path = typer.Option(..., "--config", help="TOML training config (configs/gar/*.toml)."),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default: runs/<id>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run directory's last checkpoint."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config value: section.key=value (repeatable)."),
) -> None:
    """Train a GAR model (any backbone; ratio attention and RGB distillation as configured).

    Under torchrun it trains with DistributedDataParallel (gloo on CPU, nccl on GPU).
    """
    from gader.training.config import load_config
    from gader.training.trainer import train

    settings = load_config(config, overrides)
    result = train(settings, out or Path("runs") / settings.id, resume=resume)
    if result.model_dir is not None:
        err_console.print(
            f"trained {result.iterations} iterations in {result.seconds / 60:.1f} min; model in {result.model_dir}"
        )


def evaluate(
    model: str = typer.Option(..., "--model", help="Model directory or shipped model id."),
    data: Path = typer.Option(..., "--data", help="Dataset directory (any supported layout)."),
    protocol: Protocol = typer.Option(..., "--protocol", help="casia-b, open-set or verification."),
    distance: Distance | None = typer.Option(None, "--distance", help="Default: the model card's distance."),
    gallery: str = typer.Option(
        "nm-01,nm-02,nm-03,nm-04",
        "--gallery-conditions",
        help="open-set / verification: the gallery's conditions (the rest are probes).",
    ),
    no_ratios: bool = typer.Option(False, "--no-ratios", help="Ignore ratios in the data (ablation)."),
    max_frames: int = typer.Option(720, "--max-frames", min=1, help="Frames per sequence at most (OpenGait: 720)."),
    save: Path | None = typer.Option(None, "--save-embeddings", help="Also write the embeddings (.npz)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object, as eval-embeddings does."),
    plot: Path | None = typer.Option(None, "--plot", help="Directory to write PNG curves into."),
) -> None:
    """Embed a dataset with a model (all frames of each sequence, batched by length) and evaluate it."""
    import torch

    from gader import protocols
    from gader.data import open_dataset
    from gader.embedding import embed_dataset, part_major
    from gader.model_io import load_model

    loaded = load_model(model, device="cuda" if torch.cuda.is_available() else "cpu")
    dataset = open_dataset(data)
    gallery_conditions = [c.strip().lower() for c in gallery.split(",") if c.strip()]
    if protocol != Protocol.casia_b:  # checked before the long part: the gallery must exist in this data
        present = sorted({info.condition.lower() for info in dataset.infos})
        if not set(gallery_conditions) & set(present):
            raise GaderError(
                f"--gallery-conditions {gallery!r} names no condition of this data (it has: {', '.join(present)}); "
                "name the conditions that form the gallery, the rest become probes"
            )
    embeddings, infos = embed_dataset(
        loaded.embedder,
        dataset,
        loaded.embedder.input_size,
        use_ratios=not no_ratios,
        max_frames=max_frames,
        device=next(loaded.embedder.parameters()).device,
    )
    conditions = np.array([i.condition for i in infos])
    result_set = protocols.EmbeddingSet(
        part_major(embeddings),  # [N, p, d]: compared part by part
        np.array([i.subject for i in infos]),
        conditions,
        np.array([i.view for i in infos]),
        is_probe=None if protocol == Protocol.casia_b else ~np.isin(np.char.lower(conditions), gallery_conditions),
    )
    if save is not None:
        result_set.save(save)
    result = protocols.evaluate(result_set, protocol.value, (distance.value if distance else loaded.card.distance))
    if plot is not None:
        for path in write_plots(result, plot):
            err_console.print(f"wrote {path}")
    if as_json:
        print_json(result.summary)
    else:
        _print_table(protocol.value, result.summary)


def import_opengait(
    checkpoint: Path = typer.Argument(..., help="OpenGait checkpoint (.pt with {'model': state_dict, ...})."),
    arch: str = typer.Option(..., "--arch", help="gaitset, gaitpart, gaitgl or gaitbase."),
    out: Path = typer.Option(..., "--out", help="Model directory to write."),
    model_id: str | None = typer.Option(None, "--id", help="Model id (default: the checkpoint's file name)."),
    input_width: int = typer.Option(44, "--input-width", help="Width the model was trained at (OpenGait: 44)."),
    bnneck_part_major: bool = typer.Option(
        False, "--bnneck-part-major", help="GaitBase from older OpenGait versions (BNNeck flattened part-major)."
    ),
) -> None:
    """Turn an OpenGait-trained checkpoint into a gader model that the service can load."""
    from gader.model_io import ModelCard, save_model
    from gader.opengait_import import import_checkpoint

    model, iteration = import_checkpoint(checkpoint, arch, input_width, bnneck_part_major)
    card = ModelCard(
        id=model_id or checkpoint.stem,
        gar={},
        description=f"{arch} imported from the OpenGait checkpoint {checkpoint.name}",
        training={"source": "opengait", "checkpoint": checkpoint.name, "iteration": iteration},
    )
    path = save_model(out, model.embedder(), card)
    err_console.print(f"wrote {path} ({arch}, embedding {card.embedding_shape[0]} x {card.embedding_shape[1]} parts)")


def export(
    to: Path = typer.Option(Path("model_repository"), "--to", help="Triton model repository to write into."),
    model: list[str] = typer.Option([], "--model", help="GAR model(s) to export (id or directory); repeatable."),
    detector: str | None = typer.Option(None, "--detector", help="Gait detector to export (id or directory)."),
    max_batch: int = typer.Option(16, "--max-batch", min=1, help="Largest dynamic batch."),
    queue_delay_us: int = typer.Option(2000, "--queue-delay-us", min=0, help="How long Triton waits to fill a batch."),
) -> None:
    """Write Triton python-backend models for GAR models (TorchScript, plus ONNX) and the detector (TorchScript)."""
    from gader.export import export_detector, export_gar

    if not model and detector is None:
        raise GaderError("nothing to export: give --model and/or --detector")
    for name in model:
        err_console.print(f"wrote {export_gar(name, to, max_batch, queue_delay_us)}")
    if detector is not None:
        err_console.print(f"wrote {export_detector(detector, to, max_batch, queue_delay_us)}")


def triton_local(
    repository: Path = typer.Option(Path("model_repository"), "--repository", help="Triton model repository."),
    grpc_port: int = typer.Option(8001, "--grpc-port"),
    http_port: int = typer.Option(8000, "--http-port"),
    device: str = typer.Option("auto", "--device", help="auto, cpu (KIND_GPU becomes KIND_CPU) or gpu."),
    workdir: Path | None = typer.Option(None, "--workdir", help="Where the server and the repository copy go."),
) -> None:
    """Run the tritonserver binary shipped in nvidia-pytriton on a model repository (until SIGTERM / Ctrl-C)."""
    import signal
    import threading

    from gader import triton_local as runner

    triton = runner.start(repository, grpc_port, http_port, workdir=workdir, device=device)
    print(f"triton ready: gRPC {triton.grpc_url}, HTTP 127.0.0.1:{http_port}, models in {repository}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set() and triton.process.poll() is None:
        stop.wait(0.5)
    triton.stop()
    print("triton stopped", flush=True)
