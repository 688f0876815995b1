"""Triton python backend: the gait detector's network. Each request carries a DHS [C, W, T] and its windows
[M, 2] (start, end); a dynamic batch is padded into one tensor, the shared features are computed once per
sequence, each window takes the max of its sequence's feature columns (``gader.detector.pool_spans``, scripted
into the traced graph), and every window's class probabilities come back [M, 4]."""

import json
import os

import numpy as np
import torch
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        directory = os.path.dirname(os.path.abspath(__file__))
        if args["model_instance_kind"] == "GPU" and torch.cuda.is_available():
            self.device = torch.device(f"cuda:{args['model_instance_device_id']}")
        else:
            self.device = torch.device("cpu")
            # CPU instances share the host's cores: left alone, each would start one intra-op thread per core
            # and together they would oversubscribe the CPU, so the cores are split between instances.
            config = json.loads(args["model_config"])
            instances = sum(int(group.get("count", 1)) for group in config.get("instance_group", [])) or 1
            threads = config.get("parameters", {}).get("CPU_THREADS", {}).get("string_value", "")
            torch.set_num_threads(int(threads) if threads else max(1, (os.cpu_count() or 1) // instances))
        self.network = torch.jit.load(os.path.join(directory, "model.pt"), map_location=self.device).eval()

    def execute(self, requests):
        dhs = [pb_utils.get_input_tensor_by_name(r, "DHS").as_numpy()[0] for r in requests]  # [C, W, T]
        windows = [pb_utils.get_input_tensor_by_name(r, "WINDOWS").as_numpy()[0] for r in requests]  # [M, 2]
        longest = max(d.shape[-1] for d in dhs)
        batch = np.zeros((len(dhs), *dhs[0].shape[:2], longest), np.float32)
        valid = np.zeros((len(dhs), longest), bool)
        for row, signature in enumerate(dhs):
            batch[row, :, :, : signature.shape[-1]] = signature
            valid[row, : signature.shape[-1]] = True
        counts = [len(w) for w in windows]
        spans = np.concatenate(windows).astype(np.int64)  # [M, 2] over the whole batch
        owner = np.repeat(np.arange(len(windows)), counts)  # [M]: each window's sequence
        # Every batch has its own frame count: the JIT profiling executor would keep re-specialising on
        # shapes (slow first calls per shape, measured 2x slower steady), so run the traced graph as is.
        with torch.no_grad(), torch.jit.optimized_execution(False):
            logits = self.network(
                torch.from_numpy(batch).to(self.device),
                torch.from_numpy(valid).to(self.device),
                torch.from_numpy(spans).to(self.device),
                torch.from_numpy(owner).to(self.device),
            )
            probabilities = torch.softmax(logits, dim=1).float().cpu().numpy()
        responses, start = [], 0
        for count in counts:
            part = probabilities[start : start + count]
            start += count
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("PROBABILITIES", part[None])]))
        return responses
