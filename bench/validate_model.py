"""A saved model's score on the people its training run held out, computed exactly as the run's validation
(`gader.training.trainer.validate_embedder`: the same split, frames and protocol), so a shipped model can be
re-scored when the evaluation changes without retraining it.

    python -m bench.validate_model --model synth-wild-gar --config configs/gar/synth-wild-gaitbase-gar.toml \
        [--set data.train=/tmp/data/synth-wild ...]

Prints the validation summary as JSON beside the one recorded in the model card at training time.
"""

from __future__ import annotations

import argparse
import json

import torch

from gader.model_io import load_model
from gader.training.config import load_config
from gader.training.trainer import data_splits, validate_embedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a model directory or shipped id")
    parser.add_argument("--config", required=True, help="the training config the model was made with")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config, args.overrides)
    _train, held_out = data_splits(config)
    if held_out is None:
        raise SystemExit("the config holds nobody out (data.val_subjects = 0 and no data.validation)")
    loaded = load_model(args.model)
    now = validate_embedder(loaded.embedder.eval(), held_out, config, torch.device("cpu"))
    print(json.dumps({"now": now, "recorded at training": loaded.card.metrics.get("validation")}, indent=2))


if __name__ == "__main__":
    main()
