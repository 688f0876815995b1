"""Training GAR models: the loop, validation on held-out subjects, checkpoints, logs, export.

Runs as one process or under ``torchrun`` (DistributedDataParallel: gloo on CPU, nccl on GPU). Each
process draws its own P x K batch, so the effective batch is P x K x processes. Mixed precision on CUDA.

A run directory holds ``config.json``, ``metrics.jsonl`` (one JSON object per logged step and per
validation), ``loss.png``, ``checkpoints/last.pt`` (model, optimiser, scheduler, iteration: ``--resume``
continues from it) and, at the end, the exported inference model in ``model/``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from gader.data import open_dataset, split_dataset
from gader.data.dataset import SequenceDataset
from gader.data.record import SequenceRecord
from gader.embedding import embed_dataset, part_major
from gader.errors import GaderError
from gader.gar import GAR, GaitEmbedder, GAROutput
from gader.losses import part_accuracy, part_cross_entropy, triplet_loss
from gader.model_io import ModelCard, save_model
from gader.progress import progress
from gader.protocols import EmbeddingSet, casia_b, open_set, verification
from gader.training.config import TrainConfig
from gader.training.data import Augmentation, PKSampler, TrainingSet, make_batch


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world == 1:
        return Distributed(0, 1, torch.device("cuda" if cuda else "cpu"))
    dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    local = int(os.environ.get("LOCAL_RANK", rank))
    if cuda:
        torch.cuda.set_device(local)
    return Distributed(rank, world, torch.device(f"cuda:{local}" if cuda else "cpu"))


def objective(out: GAROutput, labels: torch.Tensor, config: TrainConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """GAR's loss: 0.425 L(rgb) + 0.425 L(sil) + 0.15 L_distill, or L(sil) without the RGB branch, where
    L = triplet (+ cross-entropy where the architecture has a classifier)."""
    optim = config.optim
    log: dict[str, float] = {}

    def branch(output, name: str) -> torch.Tensor:
        triplet = triplet_loss(output.triplet_features, labels, optim.triplet_margin)
        loss = triplet.loss
        log[f"{name}_triplet"] = triplet.loss.item()
        log[f"{name}_active_triplets"] = triplet.active_fraction
        if output.logits is not None and optim.ce_weight > 0:
            ce = part_cross_entropy(output.logits, labels, optim.ce_scale, optim.label_smoothing)
            loss = loss + optim.ce_weight * ce
            log[f"{name}_ce"] = ce.item()
            log[f"{name}_accuracy"] = part_accuracy(output.logits, labels)
        return loss

    total = branch(out.silhouette, "sil")
    if out.rgb is not None and out.distillation is not None:
        w_rgb, w_sil, w_distill = config.model.loss_weights
        total = w_rgb * branch(out.rgb, "rgb") + w_sil * total + w_distill * out.distillation
        log["distill"] = out.distillation.item()
    log["loss"] = total.item()
    return total, log


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    optim = config.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if optim.optimizer == "sgd":
        return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
    if optim.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    return torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)


def _schedule(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then a multi-step decay (milestones in iterations)."""
    optim = config.optim

    def factor(iteration: int) -> float:
        warm = min(1.0, (iteration + 1) / optim.warmup) if optim.warmup else 1.0
        return warm * optim.gamma ** sum(iteration >= m for m in optim.milestones)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _open_data(path: str, key: str) -> SequenceDataset:
    """A config's dataset; a relative path that is not there names where it was looked for (the shipped configs
    give paths from the repository root, as `make` and the docs run them)."""
    if not Path(path).is_absolute() and not Path(path).exists():
        raise GaderError(
            f"{key} {path!r}: no such directory here ({Path.cwd()}); relative paths in a config are read from the "
            f"current directory, and the shipped configs expect the repository root (or --set {key}=/absolute/path)"
        )
    return open_dataset(path)


def data_splits(config: TrainConfig) -> tuple[SequenceDataset, SequenceDataset | None]:
    """(train, held out or None) as a training run with ``config`` reads them (bench.validate_model too)."""
    dataset = _open_data(config.data.train, "data.train")
    if config.data.validation:
        return dataset, _open_data(config.data.validation, "data.validation")
    if config.data.val_subjects > 0:
        return split_dataset(dataset, val_count=config.data.val_subjects, seed=config.data.val_seed)
    return dataset, None


def validate(model: GAR, dataset: SequenceDataset, config: TrainConfig, device: torch.device) -> dict[str, Any]:
    """Embed the validation subjects with the inference view and score them."""
    return validate_embedder(model.embedder().eval(), dataset, config, device)


def validate_embedder(
    embedder: GaitEmbedder, dataset: SequenceDataset, config: TrainConfig, device: torch.device
) -> dict[str, Any]:
    """A training run's validation for any embedder, a saved model's included (``bench.validate_model``)."""
    size = (embedder.silhouette.config.input_height, embedder.silhouette.config.input_width)
    embeddings, infos = embed_dataset(
        embedder,
        dataset,
        size,
        use_ratios=config.data.use_ratios,
        max_frames=config.data.val_max_frames,
        device=device,
        show_progress=False,
        select_frames=SequenceRecord.walking_frames if config.data.gait_frames_only else None,
    )
    subjects = np.array([info.subject for info in infos])
    conditions, views = np.array([i.condition for i in infos]), np.array([i.view for i in infos])
    data = EmbeddingSet(part_major(embeddings), subjects, conditions, views)  # [N, p, d]: compared part by part
    if config.data.val_protocol == "casia-b":
        summary = casia_b(data).summary
        return {"rank1": summary["rank1"], "rank5": summary["rank5"]}
    first = {}
    for index, subject in enumerate(subjects):
        first.setdefault(subject, index)
    data.is_probe = np.array([first[s] != i for i, s in enumerate(subjects)])
    result = open_set(data).summary
    result["tar_at_far"] = verification(data).summary["tar_at_far"]
    return {k: result[k] for k in ("rank1", "rank5", "mAP", "tar_at_far")}


def _save_checkpoint(path: Path, model: GAR, optimizer, scheduler, iteration: int, config: TrainConfig) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "iteration": iteration,
            "config": json.dumps(config.to_dict()),
        },
        temporary,
    )
    os.replace(temporary, path)


def _log(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


@dataclass
class TrainResult:
    run_dir: Path
    iterations: int
    seconds: float
    validation: dict[str, Any] | None
    model_dir: Path | None


def train(config: TrainConfig, run_dir: str | Path, resume: bool = False, show_progress: bool = True) -> TrainResult:
    ctx = setup_distributed()
    run_dir = Path(run_dir)
    try:
        return _train(config, run_dir, resume, show_progress and ctx.main, ctx)
    finally:
        if ctx.world > 1:
            dist.destroy_process_group()


def _train(config: TrainConfig, run_dir: Path, resume: bool, show: bool, ctx: Distributed) -> TrainResult:
    optim = config.optim
    torch.set_num_threads(optim.threads or max(1, (os.cpu_count() or 1) // ctx.world))
    torch.manual_seed(optim.seed + ctx.rank)
    train_set, val_set = data_splits(config)
    backbone = config.model.backbone_config()
    size = (backbone.input_height, backbone.input_width)
    use_ratios = config.data.use_ratios and config.model.ratio_attention
    training = TrainingSet(
        train_set,
        size,
        with_rgb=config.model.distillation,
        with_ratios=use_ratios,
        gait_frames_only=config.data.gait_frames_only,
        min_frames=3,
        show_progress=show,
    )
    if use_ratios and not training.has_ratios:
        raise GaderError("ratio attention needs per-frame ratios; the training data has none (CASIA-B keeps no boxes)")
    model_config = config.model
    if "num_classes" not in model_config.backbone and config.model.architecture in ("gaitgl", "gaitbase"):
        model_config = replace(model_config, backbone={**model_config.backbone, "num_classes": training.num_classes})
    model = GAR(model_config).to(ctx.device)
    optimizer = _optimizer(model, config)
    scheduler = _schedule(optimizer, config)
    checkpoint = run_dir / "checkpoints" / "last.pt"
    start = 0
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=ctx.device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["iteration"])
    elif ctx.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    if ctx.main:
        (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    network: nn.Module = model
    if ctx.world > 1:
        # 1x1 convolutions get channels-last gradients from oneDNN; DDP copies them into its buckets anyway.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        network = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )
    amp = optim.amp and ctx.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    rng = np.random.default_rng([optim.seed, ctx.rank, start])  # a resumed run continues with fresh draws
    sampler = iter(PKSampler(training.by_label, optim.batch_subjects, optim.batch_sequences, rng))
    augmentation = Augmentation(optim.rotate_probability, 10.0, optim.erase_probability, optim.flip_probability)
    metrics_path = run_dir / "metrics.jsonl"
    if ctx.main:
        print(
            f"training {config.id}: {config.model.architecture} on {len(training.sequences)} sequences of "
            f"{training.num_classes} subjects ({training.frames:,} frames), {ctx.world} process(es), "
            f"{ctx.device.type}, iterations {start}..{optim.iterations}",
            file=sys.stderr,
        )
    validation: dict[str, Any] | None = None
    began = time.perf_counter()
    window, window_start = time.perf_counter(), start  # time and iteration where the current log window began
    bar = progress(total=optim.iterations, initial=start, enabled=show, desc="training", unit="it")
    model.train()
    for iteration in range(start, optim.iterations):
        batch = make_batch(
            training,
            next(sampler),
            config.data.frames,
            config.data.sampling,
            config.data.frames_skip,
            augmentation,
            rng,
            ctx.device,
            config.data.frames_range,
        )
        with torch.autocast(ctx.device.type, dtype=torch.float16, enabled=amp):
            out = network(batch.silhouettes, None, batch.ratios, batch.rgb)
        loss, log = objective(out, batch.labels, config)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        bar.update(1)
        done = iteration + 1
        if ctx.main and (done % optim.log_every == 0 or done == optim.iterations):
            # per iteration of this window: the last one can be shorter than log_every
            seconds = (time.perf_counter() - window) / (done - window_start)
            window, window_start = time.perf_counter(), done
            _log(
                metrics_path,
                {"iteration": done, "lr": scheduler.get_last_lr()[0], "sec_per_iter": round(seconds, 4), **log},
            )
            bar.set_postfix(loss=f"{log['loss']:.3f}")
            if not sys.stderr.isatty() and done % (optim.log_every * 10) == 0:
                print(f"iteration {done}: loss {log['loss']:.4f}, {seconds:.2f} s/it", file=sys.stderr)
        if ctx.main and (done % optim.checkpoint_every == 0 or done == optim.iterations):
            _save_checkpoint(checkpoint, model, optimizer, scheduler, done, config)
        should_validate = optim.validate_every and done % optim.validate_every == 0 and done < optim.iterations
        if val_set is not None and ctx.main and (should_validate or done == optim.iterations):
            validation = validate(model, val_set, config, ctx.device)
            model.train()
            _log(metrics_path, {"iteration": done, "validation": validation})
            window, window_start = time.perf_counter(), done  # seconds per iteration leave the validation out
            print(f"iteration {done}: validation {json.dumps(validation)}", file=sys.stderr)
            _curves(run_dir)
        if ctx.world > 1 and should_validate:
            dist.barrier()
    bar.close()
    if val_set is not None and ctx.main and validation is None:
        # Resumed at (or after a crash in) the final validation: the loop had nothing left to run.
        validation = validate(model, val_set, config, ctx.device)
        _log(metrics_path, {"iteration": optim.iterations, "validation": validation})
        print(f"iteration {optim.iterations}: validation {json.dumps(validation)}", file=sys.stderr)
    seconds = time.perf_counter() - began
    model_dir = None
    if ctx.main:
        _curves(run_dir)
        card = ModelCard(
            id=config.id,
            gar={},
            description=config.description,
            training={
                "config": config.to_dict(),
                "iterations": optim.iterations,
                "seconds_this_run": round(seconds, 1),
                "processes": ctx.world,
                "device": ctx.device.type,
                "train_subjects": training.num_classes,
                "train_sequences": len(training.sequences),
            },
            metrics={"validation": validation} if validation else {},
        )
        model_dir = save_model(run_dir / "model", model.embedder(), card, model.rgb)
    return TrainResult(run_dir, optim.iterations, seconds, validation, model_dir)


def _curves(run_dir: Path) -> None:
    from gader.plots import plot_training_curves

    path = run_dir / "metrics.jsonl"
    if path.is_file():
        plot_training_curves(
            [json.loads(line) for line in path.read_text().splitlines() if line.strip()], run_dir / "loss.png"
        )
