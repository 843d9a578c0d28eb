"""A BERT encoder in torch written the classic way, only for exporting the ONNX peer.

Why not export ``transformers.BertModel``: transformers 5 builds the attention mask with its
masking utilities and calls scaled-dot-product attention, so the exported graph no longer has
the sub-graph that ONNX Runtime's transformer optimizer recognises, and ``Attention`` is not
fused (``get_fused_operator_statistics()`` reports 0). This module computes exactly what
transformers 4.x's eager ``BertModel`` did, in the same operations, so that the optimizer fuses
``EmbedLayerNormalization``, ``Attention``, ``SkipLayerNormalization`` and ``BiasGelu`` as it does
for the graphs optimum exports:

- position ids are a slice of a registered buffer, ``position_ids[:, :seq_len]``;
- the mask is added to the scores as ``(1 - mask[:, None, None, :]) * -10000``;
- attention is ``softmax(q @ k^T / sqrt(d) + mask) @ v`` with view/permute head splitting;
- GELU is the erf form, LayerNorm the torch module.

Parameter names match the safetensors of a BERT sentence-transformers model (``embeddings.*``,
``encoder.layer.N.*``), so ``load_state_dict`` takes the file as it is. Output: the last hidden
state ``(batch, seq, hidden)``; pooling happens outside the graph, the same way for every peer.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F


class Embeddings(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        hidden = cfg["hidden_size"]
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], hidden)
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], hidden)
        self.token_type_embeddings = nn.Embedding(cfg["type_vocab_size"], hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=cfg["layer_norm_eps"])
        positions = torch.arange(cfg["max_position_embeddings"]).unsqueeze(0)
        self.register_buffer("position_ids", positions, persistent=False)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        position_ids = self.position_ids[:, : input_ids.size(1)]
        x = (
            self.word_embeddings(input_ids)
            + self.token_type_embeddings(token_type_ids)
            + self.position_embeddings(position_ids)
        )
        return self.LayerNorm(x)


class SelfAttention(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        hidden = cfg["hidden_size"]
        self.heads = cfg["num_attention_heads"]
        self.head_dim = hidden // self.heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(x.size()[:-1] + (self.heads, self.head_dim))
        return x.permute(0, 2, 1, 3)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = self.split_heads(self.query(hidden))
        k = self.split_heads(self.key(hidden))
        v = self.split_heads(self.value(hidden))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        probs = torch.softmax(scores + mask, dim=-1)
        context = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return context.view(context.size()[:-2] + (self.heads * self.head_dim,))


class DenseAddNorm(nn.Module):
    """``LayerNorm(dense(x) + residual)``: BERT's ``*Output`` blocks."""

    def __init__(self, cfg: dict, inputs: int) -> None:
        super().__init__()
        self.dense = nn.Linear(inputs, cfg["hidden_size"])
        self.LayerNorm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.self = SelfAttention(cfg)
        self.output = DenseAddNorm(cfg, cfg["hidden_size"])

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(hidden, mask), hidden)


class Intermediate(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg["hidden_size"], cfg["intermediate_size"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class Layer(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.attention = Attention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = DenseAddNorm(cfg, cfg["intermediate_size"])

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attended = self.attention(hidden, mask)
        return self.output(self.intermediate(attended), attended)


class Encoder(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.layer = nn.ModuleList(Layer(cfg) for _ in range(cfg["num_hidden_layers"]))


class ClassicBert(nn.Module):
    def __init__(self, cfg: dict) -> None:
        super().__init__()
        if cfg.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"hidden_act {cfg['hidden_act']!r}: only 'gelu' (erf) is written here")
        if cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are written here")
        self.embeddings = Embeddings(cfg)
        self.encoder = Encoder(cfg)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        mask = attention_mask.unsqueeze(1).unsqueeze(2).to(torch.float32)
        mask = (1.0 - mask) * -10000.0
        hidden = self.embeddings(input_ids, token_type_ids)
        for layer in self.encoder.layer:
            hidden = layer(hidden, mask)
        return hidden


def load(model_dir: Path) -> ClassicBert:
    """The model in ``model_dir`` (config.json + model.safetensors), in eval mode, float32."""
    from safetensors.torch import load_file

    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    model = ClassicBert(cfg)
    weights = load_file(str(model_dir / "model.safetensors"))
    # Some snapshots prefix every name with "bert."; the pooler and position_ids are not used.
    weights = {k.removeprefix("bert."): v.float() for k, v in weights.items()}
    weights = {
        k: v
        for k, v in weights.items()
        if not k.startswith("pooler.") and k != "embeddings.position_ids"
    }
    model.load_state_dict(weights, strict=True)
    return model.eval()
