"""A Llama-70B-shaped architecture in plain `torch.nn`, for `modelbrowse FILE:Llama70B --meta`.

The layout and parameter names follow `LlamaForCausalLM` (80 decoder layers, hidden 8192,
intermediate 28672, 64 attention heads with 8 key/value heads, so the k and v projections map
8192 to 1024, vocabulary 32000, RMSNorm weights, an untied output layer): 723 tensors,
68.98B parameters. Only the shapes matter here; `forward` is left out. Built for real it would take
257 GiB of float32, so the benchmark opens it with `--meta` only.
"""

from __future__ import annotations

import torch
from torch import nn

HIDDEN = 8192
INTERMEDIATE = 28672
LAYERS = 80
HEADS = 64
KV_HEADS = 8
VOCAB = 32000
HEAD_DIM = HIDDEN // HEADS


class RMSNorm(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q_proj = nn.Linear(HIDDEN, HEADS * HEAD_DIM, bias=False)
        self.k_proj = nn.Linear(HIDDEN, KV_HEADS * HEAD_DIM, bias=False)
        self.v_proj = nn.Linear(HIDDEN, KV_HEADS * HEAD_DIM, bias=False)
        self.o_proj = nn.Linear(HEADS * HEAD_DIM, HIDDEN, bias=False)


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(HIDDEN, INTERMEDIATE, bias=False)
        self.up_proj = nn.Linear(HIDDEN, INTERMEDIATE, bias=False)
        self.down_proj = nn.Linear(INTERMEDIATE, HIDDEN, bias=False)


class DecoderLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.self_attn = Attention()
        self.mlp = MLP()
        self.input_layernorm = RMSNorm(HIDDEN)
        self.post_attention_layernorm = RMSNorm(HIDDEN)


class LlamaModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, HIDDEN)
        self.layers = nn.ModuleList(DecoderLayer() for _ in range(LAYERS))
        self.norm = RMSNorm(HIDDEN)


class Llama70B(nn.Module):
    """`LlamaForCausalLM`'s layout at the 70B size: `model` and `lm_head`."""

    def __init__(self) -> None:
        super().__init__()
        self.model = LlamaModel()
        self.lm_head = nn.Linear(HIDDEN, VOCAB, bias=False)
