"""Triton python backend: GAR embeddings. One execute() call receives a dynamic batch of requests (one
sequence each, of any length); they are padded into one tensor with a frame mask and embedded in a single
forward pass of the exported TorchScript module, on the instance's device."""

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
        self.plain = torch.jit.load(os.path.join(directory, "model.pt"), map_location=self.device).eval()
        ratios_path = os.path.join(directory, "model_ratios.pt")
        self.with_ratios = None
        if os.path.exists(ratios_path):
            self.with_ratios = torch.jit.load(ratios_path, map_location=self.device).eval()
        with open(os.path.join(directory, "card.json")) as handle:
            self.card = json.load(handle)

    def _run(self, items):
        """items: list of (index, silhouettes [T, h, w], ratios [T] or None) sharing one module."""
        longest = max(s.shape[0] for _i, s, _r in items)
        height, width = items[0][1].shape[1:]
        batch = np.zeros((len(items), 1, longest, height, width), np.float32)
        mask = np.zeros((len(items), longest), bool)
        ratios = np.zeros((len(items), longest), np.float32)
        for row, (_index, silhouettes, ratio) in enumerate(items):
            batch[row, 0, : len(silhouettes)] = silhouettes
            mask[row, : len(silhouettes)] = True
            if ratio is not None:
                ratios[row, : len(ratio)] = ratio
        # Every batch has its own frame count: the JIT profiling executor would keep re-specialising on
        # shapes (slow first calls per shape, measured 2x slower steady), so run the traced graph as is.
        with torch.no_grad(), torch.jit.optimized_execution(False):
            tensors = [torch.from_numpy(batch).to(self.device), torch.from_numpy(mask).to(self.device)]
            if items[0][2] is not None:
                out = self.with_ratios(*tensors, torch.from_numpy(ratios).to(self.device))
            else:
                out = self.plain(*tensors)
        return out.float().cpu().numpy()

    def execute(self, requests):
        plain, with_ratios = [], []
        for index, request in enumerate(requests):
            silhouettes = pb_utils.get_input_tensor_by_name(request, "SILHOUETTES").as_numpy()[0]  # [T, h, w]
            ratios_tensor = pb_utils.get_input_tensor_by_name(request, "RATIOS")
            ratios = None if ratios_tensor is None else ratios_tensor.as_numpy()[0]
            if ratios is not None and self.with_ratios is not None:
                with_ratios.append((index, silhouettes, ratios))
            else:
                plain.append((index, silhouettes, None))
        embeddings = [None] * len(requests)
        for group in (plain, with_ratios):
            if group:
                for (index, _s, _r), embedding in zip(group, self._run(group), strict=True):
                    embeddings[index] = embedding
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("EMBEDDING", e[None].astype(np.float32))])
            for e in embeddings
        ]
