#!/usr/bin/python3
# The onnxruntime reference for test/bench/hf-realscale.ts: a Qwen2ForCausalLM decoder step with a KV cache, written
# from the Hugging Face semantics (Qwen2Model: RMSNorm, q/k/v with bias, rotate-half RoPE at rope_theta, GQA by
# repeat_kv, causal softmax attention, SiLU-gated MLP, final norm, lm_head tied to embed_tokens), random float32
# weights, exported with torch.onnx (Debian python3-torch 1.13, run with /usr/bin/python3).
#
#   /usr/bin/python3 test/bench/qwen2_onnx.py MODEL_DIR OUT_DIR [--random SEED]
#
# MODEL_DIR is a Hugging Face Qwen2 folder (config.json, model.safetensors or a sharded index, F32/BF16/F16): its
# weights are loaded (widened to float32), so onnxruntime runs the very model lavi-ts runs and their greedy ids can
# be compared. With --random SEED the weights are drawn here instead (torch RNG) and only config.json is read.
#
# Graph (opset 17): inputs input_ids int64 [1, T], position_ids int64 [1, T], past_key_i / past_value_i float32
# [1, n_kv, P, head_dim] for each layer i (P = 0 for the prefill); outputs logits float32 [1, 1, vocab] (the last
# position only, as a decode loop needs and as lavi-ts computes it) and present_key_i / present_value_i
# [1, n_kv, P + T, head_dim]. Linear weights are stored [in, out] so they are MatMul initializers as they are (no
# transpose to fold); the tied head becomes one folded [hidden, vocab] initializer next to the embedding table.
# Over 2 GB of initializers, torch writes them as external data files beside OUT_DIR/model.onnx.

import json
import math
import os
import struct
import sys

import numpy as np
import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


NEG_INF = torch.tensor(float("-inf"))
ZERO = torch.tensor(0.0)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class Layer(nn.Module):
    def __init__(self, H, nh, nkv, hd, inter, eps):
        super().__init__()
        self.nh, self.nkv, self.hd = nh, nkv, hd
        e = lambda *s: nn.Parameter(torch.empty(*s))
        self.input_layernorm = RMSNorm(H, eps)
        self.post_attention_layernorm = RMSNorm(H, eps)
        # [in, out]: x @ W (+ b) is HF's F.linear(x, W.T, b)
        self.wq, self.bq = e(H, nh * hd), e(nh * hd)
        self.wk, self.bk = e(H, nkv * hd), e(nkv * hd)
        self.wv, self.bv = e(H, nkv * hd), e(nkv * hd)
        self.wo = e(nh * hd, H)
        self.wg, self.wu, self.wd = e(H, inter), e(H, inter), e(inter, H)

    def forward(self, x, cos, sin, mask, past_k, past_v):
        T = x.shape[1]
        h = self.input_layernorm(x)
        q = (h @ self.wq + self.bq).view(1, T, self.nh, self.hd).transpose(1, 2)
        k = (h @ self.wk + self.bk).view(1, T, self.nkv, self.hd).transpose(1, 2)
        v = (h @ self.wv + self.bv).view(1, T, self.nkv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k_all = torch.cat([past_k, k], dim=2)
        v_all = torch.cat([past_v, v], dim=2)
        g = self.nh // self.nkv
        # repeat_kv: query head j reads kv head j // g
        kr = k_all.unsqueeze(2).expand(-1, -1, g, -1, -1).reshape(1, self.nh, -1, self.hd)
        vr = v_all.unsqueeze(2).expand(-1, -1, g, -1, -1).reshape(1, self.nh, -1, self.hd)
        att = torch.softmax(q @ kr.transpose(2, 3) * (1.0 / math.sqrt(self.hd)) + mask, dim=-1)
        o = (att @ vr).transpose(1, 2).reshape(1, T, self.nh * self.hd)
        x = x + o @ self.wo
        h = self.post_attention_layernorm(x)
        gate = h @ self.wg
        x = x + (gate * torch.sigmoid(gate) * (h @ self.wu)) @ self.wd
        return x, k_all, v_all


class Qwen2Step(nn.Module):
    def __init__(self, c):
        super().__init__()
        H, nh = c["hidden_size"], c["num_attention_heads"]
        nkv, hd = c["num_key_value_heads"], c["hidden_size"] // c["num_attention_heads"]
        eps = c["rms_norm_eps"]
        assert c["tie_word_embeddings"], "this reference ties lm_head to embed_tokens (Qwen2-0.5B)"
        self.embed_tokens = nn.Embedding(c["vocab_size"], H)
        self.layers = nn.ModuleList([Layer(H, nh, nkv, hd, c["intermediate_size"], eps) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(H, eps)
        self.register_buffer("inv_freq", 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)).float())

    def forward(self, input_ids, position_ids, *past):
        x = self.embed_tokens(input_ids)                                  # [1, T, H]
        freqs = position_ids.float()[..., None] * self.inv_freq           # [1, T, hd/2]
        emb = torch.cat([freqs, freqs], dim=-1)[:, None]                   # [1, 1, T, hd]
        cos, sin = emb.cos(), emb.sin()
        S = past[0].shape[2] + input_ids.shape[1]
        kpos = torch.arange(S, device=input_ids.device)
        # causal: key j is visible to the query at position p when j <= p
        mask = torch.where(kpos[None, None, None, :] > position_ids[:, None, :, None], NEG_INF, ZERO)
        present = []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, cos, sin, mask, past[2 * i], past[2 * i + 1])
            present += [k, v]
        x = self.norm(x[:, -1:, :])
        logits = x @ self.embed_tokens.weight.t()
        return (logits, *present)


def safetensors_files(folder):
    idx = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(idx):
        return [os.path.join(folder, f) for f in sorted(set(json.load(open(idx))["weight_map"].values()))]
    return [os.path.join(folder, "model.safetensors")]


def read_tensors(path):
    """Yields (name, float32 numpy array) from a safetensors file without reading it all into memory."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
    header.pop("__metadata__", None)
    mm = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
    for name, v in header.items():
        b, e = v["data_offsets"]
        raw, dt = mm[b:e], v["dtype"]
        if dt == "BF16":
            a = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt == "F16":
            a = raw.view("<f2").astype(np.float32)
        elif dt == "F32":
            a = np.array(raw.view("<f4"))
        else:
            raise ValueError(f"{path}: {name} is {dt}")
        yield name, a.reshape(v["shape"])


def load_hf_weights(m, folder):
    """Hugging Face names -> this module's parameters (Linear weights [out, in] stored transposed)."""
    dst = {"model.embed_tokens.weight": (m.embed_tokens.weight, False), "model.norm.weight": (m.norm.weight, False)}
    for i, l in enumerate(m.layers):
        p = f"model.layers.{i}."
        dst[p + "input_layernorm.weight"] = (l.input_layernorm.weight, False)
        dst[p + "post_attention_layernorm.weight"] = (l.post_attention_layernorm.weight, False)
        for a, w, b in (("q", l.wq, l.bq), ("k", l.wk, l.bk), ("v", l.wv, l.bv)):
            dst[p + f"self_attn.{a}_proj.weight"] = (w, True)
            dst[p + f"self_attn.{a}_proj.bias"] = (b, False)
        dst[p + "self_attn.o_proj.weight"] = (l.wo, True)
        dst[p + "mlp.gate_proj.weight"] = (l.wg, True)
        dst[p + "mlp.up_proj.weight"] = (l.wu, True)
        dst[p + "mlp.down_proj.weight"] = (l.wd, True)
    seen = set()
    for f in safetensors_files(folder):
        for name, a in read_tensors(f):
            if name not in dst:
                raise KeyError(f"{f}: unexpected tensor {name}")
            p, tr = dst[name]
            t = torch.from_numpy(np.ascontiguousarray(a))
            p.copy_(t.T if tr else t)
            seen.add(name)
    missing = set(dst) - seen
    if missing:
        raise KeyError(f"{folder}: missing {sorted(missing)[:5]}")


def main():
    model_dir, out_dir = sys.argv[1], sys.argv[2]
    seed = int(sys.argv[sys.argv.index("--random") + 1]) if "--random" in sys.argv else None
    c = json.load(open(os.path.join(model_dir, "config.json")))
    torch.manual_seed(seed or 0)
    with torch.no_grad():
        m = Qwen2Step(c).eval()
        if seed is None:
            load_hf_weights(m, model_dir)
        else:
            # the distributions of lavi-ts' randomSpecs: Linear ~ N(0, 1/fan_in), embedding N(0, 1), norm scales
            # 1 + N(0, 0.1^2), biases N(0, 0.05^2)
            for name, p in m.named_parameters():
                if name.endswith("layernorm.weight") or name == "norm.weight":
                    p.normal_(1.0, 0.1)
                elif name.startswith("embed_tokens"):
                    p.normal_(0.0, 1.0)
                elif p.dim() == 1:
                    p.normal_(0.0, 0.05)
                else:
                    p.normal_(0.0, 1.0 / math.sqrt(p.shape[0]))
    L = c["num_hidden_layers"]
    nkv, hd = c["num_key_value_heads"], c["hidden_size"] // c["num_attention_heads"]
    T = 3
    ids = torch.tensor([[1, 2, 3]], dtype=torch.long)
    pos = torch.tensor([[2, 3, 4]], dtype=torch.long)
    past = [torch.zeros(1, nkv, 2, hd) for _ in range(2 * L)]
    in_names = ["input_ids", "position_ids"] + [f"past_{kv}_{i}" for i in range(L) for kv in ("key", "value")]
    out_names = ["logits"] + [f"present_{kv}_{i}" for i in range(L) for kv in ("key", "value")]
    axes = {"input_ids": {1: "T"}, "position_ids": {1: "T"}}
    for i in range(L):
        for kv in ("key", "value"):
            axes[f"past_{kv}_{i}"] = {2: "P"}
            axes[f"present_{kv}_{i}"] = {2: "S"}
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "model.onnx")
    with torch.no_grad():
        torch.onnx.export(m, (ids, pos, *past), path, input_names=in_names, output_names=out_names,
                          dynamic_axes=axes, opset_version=17, do_constant_folding=True)
    n = sum(p.numel() for p in m.parameters())
    print(json.dumps({"onnx": path, "parameters": n, "weights": model_dir if seed is None else f"random seed {seed}", "torch": torch.__version__}))


if __name__ == "__main__":
    main()
