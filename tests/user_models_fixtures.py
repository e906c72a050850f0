"""The user architectures that the app and job tests train and probe (issue 16 §7): Hugging Face
``transformers`` models built from configs (never downloaded), small enough for a CPU test.

A ResNet (BatchNorm) for 1x8x8 digits and a GPT-2 LM (tied ``lm_head``/``wte``, token
cross-entropy) for markov tokens, as arch specs, the two-seed sweeps that train them, and
the ``import-run`` arguments that import GPT-2 checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_RESNET = {"num_channels": 1, "num_labels": 10, "hidden_sizes": [8, 16], "depths": [1, 1], "embedding_size": 8}
RESNET = {"factory": "transformers:ResNetForImageClassification", "output": "logits",
          "kwargs": {"config": TINY_RESNET}}
GPT2 = {"factory": "transformers:GPT2LMHeadModel", "output": "logits",
        "kwargs": {"config": {"vocab_size": 16, "n_positions": 16, "n_embd": 16, "n_layer": 1, "n_head": 2,
                              "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}}}


def two_seed_sweep(name: str, arch: dict, dataset: str, **extra) -> dict:
    """A sweep of two seeds, 4 steps of batch 16, one checkpoint at step 4; ``extra`` goes into its base."""
    return {"name": name, "grid": {"seed": [0, 1]},
            "base": {"dataset": {"name": dataset}, "arch": arch, "batch_size": 16, "steps": 4,
                     "checkpoints": [4], **extra}}


def resnet_sweep(name: str = "resnet") -> dict:
    """The ResNet on digits."""
    return two_seed_sweep(name, RESNET, "digits")


def gpt2_sweep(name: str = "gpt2") -> dict:
    """The GPT-2 LM on markov, with AdamW (SGD at lr 0.1 diverges in 4 steps)."""
    return two_seed_sweep(name, GPT2, "markov", loss="token_cross_entropy", optim={"name": "adamw", "lr": 1e-3})


def gpt2_import_argv(store: Path, folder: Path, zoo: str, name: str) -> list[str]:
    """``zooscope`` arguments that import the GPT-2 checkpoints in ``folder`` into ``zoo`` as run ``name``."""
    return ["--store", str(store), "import-run", str(folder), "--factory", GPT2["factory"], "--kwargs",
            json.dumps(GPT2["kwargs"]), "--output", "logits", "--dataset", "markov", "--zoo", zoo, "--name", name]
