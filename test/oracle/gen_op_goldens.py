#!/usr/bin/env python3
"""Generates the PyTorch golden fixtures that test/oracle.test.ts checks the CPU reference backend against.

Run with Debian's interpreter (it has python3-torch 1.13; a pyenv `python3` may not):

    /usr/bin/python3 test/oracle/gen_op_goldens.py

Every input is float32 (or packed f16/bf16 / int32 where the op takes those), drawn from fixed seeds. Every
reference output is computed in float64 from those exact float32 values with PyTorch's own functions and only then
rounded to float32, so a golden is the correctly rounded true value, not PyTorch's float32 arithmetic.

Output: one safetensors file per op family in test/fixtures/oracle/. Tensors are named "<case>.<role>"; the file's
__metadata__["cases"] is a JSON list of case descriptors:

    {"name", "op", "attrs": {...}, "inputs": {role: tensor name | [names] | null}, "expected": tensor name,
     "cmp": "close" | "exact" | "bits", "atol"?, "rtol"?, "why"?}

The safetensors writer is written out here (the format is an 8-byte little-endian header length, a JSON header
padded with spaces to a multiple of 8 bytes, then the raw little-endian tensor bytes), so no extra package is needed.
"""

import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, "test", "fixtures", "oracle")

torch.set_default_dtype(torch.float32)

F64 = torch.float64
F32 = torch.float32
NEG_INF = float("-inf")

# ---- safetensors writer --------------------------------------------------------------------------------------

ST_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int32: "I32"}


def tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    if t.dtype == torch.float32:
        return t.numpy().astype("<f4").tobytes()
    if t.dtype == torch.int32:
        return t.numpy().astype("<i4").tobytes()
    raise TypeError(f"cannot store dtype {t.dtype}")


def write_safetensors(path: str, tensors: "list[tuple[str, torch.Tensor]]", metadata: "dict[str, str]") -> int:
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, t in tensors:
        data = tensor_bytes(t)
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    text += b" " * ((-len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    return 8 + len(text) + offset


# ---- fixture families ----------------------------------------------------------------------------------------


class Family:
    """One fixture file: a seeded generator, the tensors written so far and the case descriptors."""

    def __init__(self, name: str, seed: int):
        self.name = name
        self.gen = torch.Generator().manual_seed(seed)
        self.tensors: "list[tuple[str, torch.Tensor]]" = []
        self.names: "set[str]" = set()
        self.cases: "list[dict]" = []

    # random f32 inputs
    def randn(self, *shape, scale=1.0, shift=0.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=self.gen, dtype=F64) * scale + shift).to(F32)

    def uniform(self, lo, hi, *shape) -> torch.Tensor:
        return (torch.rand(*shape, generator=self.gen, dtype=F64) * (hi - lo) + lo).to(F32)

    def randint(self, lo, hi, *shape) -> torch.Tensor:
        return torch.randint(lo, hi, shape, generator=self.gen, dtype=torch.int64).to(torch.int32)

    def _store(self, case: str, role: str, t: torch.Tensor) -> str:
        name = f"{case}.{role}"
        assert name not in self.names, name
        assert t.dtype in ST_DTYPE, (name, t.dtype)
        assert t.numel() > 0 and t.dim() > 0, name
        self.names.add(name)
        self.tensors.append((name, t))
        return name

    def case(self, name, op, attrs, inputs, expected, cmp="close", atol=None, rtol=None, why=None):
        """inputs: role → tensor | list of tensors | None. expected: the golden (float64 is rounded to f32 here)."""
        assert not any(c["name"] == name for c in self.cases), name
        ins = {}
        for role, t in inputs.items():
            if t is None:
                ins[role] = None
            elif isinstance(t, (list, tuple)):
                ins[role] = [self._store(name, f"{role}{i}", x) for i, x in enumerate(t)]
            else:
                ins[role] = self._store(name, role, t)
        if expected.dtype == F64:
            expected = expected.to(F32)
        desc = {"name": name, "op": op, "attrs": attrs, "inputs": ins, "expected": self._store(name, "expected", expected), "cmp": cmp}
        if atol is not None:
            desc["atol"] = atol
        if rtol is not None:
            desc["rtol"] = rtol
        if why:
            desc["why"] = why
        self.cases.append(desc)

    def write(self) -> int:
        meta = {
            "format": "lavi-oracle/1",
            "family": self.name,
            "generator": "test/oracle/gen_op_goldens.py",
            "torch": torch.__version__,
            "cases": json.dumps(self.cases, separators=(",", ":")),
        }
        return write_safetensors(os.path.join(OUT_DIR, f"{self.name}.safetensors"), self.tensors, meta)


def d(t: torch.Tensor) -> torch.Tensor:
    """Exact float64 copy of a (possibly packed) float tensor."""
    return t.to(F64)


def safe_softmax(s: torch.Tensor) -> torch.Tensor:
    """torch.softmax over the last axis, except that a row that is entirely -inf gives zeros (the engine's rule;
    PyTorch itself gives NaN there)."""
    p = torch.softmax(s, dim=-1)
    dead = torch.isneginf(s).all(dim=-1, keepdim=True)
    return torch.where(dead, torch.zeros_like(p), p)


# ---- matmul --------------------------------------------------------------------------------------------------


def gen_matmul() -> Family:
    f = Family("matmul", 101)

    def mm(name, a_shape, b_shape, transpose_b=False, bias=False, b_dtype=F32, op="matmul"):
        a = f.randn(*a_shape)
        b = f.randn(*b_shape, scale=0.5).to(b_dtype)  # packed weights: the stored f16/bf16 values are the truth
        bv = f.randn(b_shape[-2] if transpose_b else b_shape[-1]) if bias else None
        bm = d(b).transpose(-1, -2) if transpose_b else d(b)
        out = torch.matmul(d(a), bm)
        if bv is not None:
            out = out + d(bv)
        attrs = {"transposeB": transpose_b}
        f.case(name, op, attrs, {"a": a, "b": b, "bias": bv}, out)

    mm("mm_2d", [3, 17], [17, 5])
    mm("mm_k1", [3, 1], [1, 129])
    mm("mm_m1_decode", [1, 129], [129, 63])
    mm("mm_1x1x1", [1, 1], [1, 1])
    mm("mm_2d_bias", [17, 63], [63, 3], bias=True)
    mm("mm_batched", [2, 3, 17, 63], [2, 3, 63, 17])
    mm("mm_batched_shared_b", [2, 3, 5, 17], [17, 129], bias=True)
    mm("mm_tB_shared_bias", [2, 5, 63], [129, 63], transpose_b=True, bias=True)
    mm("mm_tB_batched_b", [2, 3, 17], [2, 5, 17], transpose_b=True, bias=True)
    mm("mm_tB_k3", [4, 3], [17, 3], transpose_b=True)
    mm("mm_bf16_tB_bias", [3, 63], [17, 63], transpose_b=True, bias=True, b_dtype=torch.bfloat16)
    mm("mm_bf16_batched_tB", [2, 1, 129], [2, 3, 129], transpose_b=True, b_dtype=torch.bfloat16)
    mm("mm_bf16_noT", [5, 17], [17, 63], b_dtype=torch.bfloat16)
    mm("mm_f16_tB", [2, 4, 129], [63, 129], transpose_b=True, b_dtype=torch.float16)
    mm("mm_f16_batched_noT_bias", [2, 3, 17], [2, 17, 3], bias=True, b_dtype=torch.float16)
    # ops.linear: x · Wᵀ + b with W [out, in] (nn.Linear's layout).
    x = f.randn(1, 3, 63)
    w = f.randn(17, 63, scale=0.2)
    bb = f.randn(17)
    f.case("linear_f32", "linear", {}, {"x": x, "weight": w, "bias": bb}, F.linear(d(x), d(w), d(bb)))
    wb = f.randn(33, 129, scale=0.2).to(torch.bfloat16)
    x = f.randn(2, 129)
    f.case("linear_bf16_nobias", "linear", {}, {"x": x, "weight": wb, "bias": None}, F.linear(d(x), d(wb)))
    return f


# ---- elementwise ---------------------------------------------------------------------------------------------


def gen_elementwise() -> Family:
    f = Family("elementwise", 202)
    fn = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}

    def binary(name, op, a, b):
        f.case(name, "binary", {"op": op}, {"a": a, "b": b}, fn[op](d(a), d(b)))

    def away_from_zero(*shape):
        s = torch.where(torch.rand(*shape, generator=f.gen) < 0.5, -1.0, 1.0)
        return (f.uniform(0.5, 2.0, *shape) * s).to(F32)

    binary("add_same", "add", f.randn(3, 17), f.randn(3, 17))
    binary("add_row_d", "add", f.randn(2, 5, 17), f.randn(17))
    binary("add_lower_rank_a", "add", f.randn(17), f.randn(2, 3, 17))
    binary("mul_col_T1", "mul", f.randn(2, 5, 17), f.randn(5, 1))
    binary("mul_scalar1", "mul", f.randn(1), f.randn(129))
    binary("sub_outer", "sub", f.randn(5, 1), f.randn(1, 17))
    binary("sub_mid_axis", "sub", f.randn(2, 3, 63), f.randn(2, 1, 63))
    binary("div_col", "div", f.randn(2, 3, 63), away_from_zero(3, 1))
    binary("div_same", "div", f.randn(129), away_from_zero(129))
    binary("add_big_small", "add", f.randn(63, scale=1e4), f.randn(63, scale=1e-3))

    # Activations over [-10, 10] (every 0.01, then random points) plus far tails.
    grid = torch.linspace(-10, 10, 2001, dtype=F64).to(F32)
    rand = f.uniform(-10, 10, 3, 129)
    tails = torch.tensor([-100, -50, -30, -20, -15, -12, 12, 15, 20, 30, 50, 100, -1e-6, 1e-6, -0.0, 0.0], dtype=F32)
    unary_ref = {
        "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "gelu_erf": lambda x: F.gelu(x),
        "silu": F.silu,
        "relu": F.relu,
        "tanh": torch.tanh,
        "neg": torch.neg,
    }
    for op, ref in unary_ref.items():
        for tag, x in (("grid", grid), ("rand", rand), ("tails", tails)):
            f.case(f"{op}_{tag}", "unary", {"op": op}, {"x": x}, ref(d(x)))
    f.case("exp_grid", "unary", {"op": "exp"}, {"x": grid}, torch.exp(d(grid)))
    f.case("exp_neg_tail", "unary", {"op": "exp"}, {"x": torch.tensor([-80.0, -88.0, -100.0, -104.0, -110.0], dtype=F32)},
           torch.exp(torch.tensor([-80.0, -88.0, -100.0, -104.0, -110.0], dtype=F64)))
    pos = f.uniform(1e-3, 100, 3, 63)
    f.case("sqrt_rand", "unary", {"op": "sqrt"}, {"x": pos}, torch.sqrt(d(pos)))
    f.case("rsqrt_rand", "unary", {"op": "rsqrt"}, {"x": pos}, torch.rsqrt(d(pos)))

    x = f.randn(3, 17)
    f.case("scale_shift", "scale", {"scale": 0.125, "shift": 3.0}, {"x": x}, d(x) * 0.125 + 3.0)
    x = f.randn(129, scale=10)
    f.case("scale_neg_noshift", "scale", {"scale": -1.75, "shift": 0.0}, {"x": x}, d(x) * -1.75)

    for name, shape in (("swiglu_2x3x63", (2, 3, 63)), ("swiglu_1", (1,)), ("swiglu_17x129", (17, 129))):
        g = f.uniform(-10, 10, *shape)
        u = f.randn(*shape)
        f.case(name, "swiglu", {}, {"gate": g, "up": u}, F.silu(d(g)) * d(u))
    return f


# ---- softmax -------------------------------------------------------------------------------------------------


def gen_softmax() -> Family:
    f = Family("softmax", 303)

    def sm(name, x, mask=None):
        s = d(x) if mask is None else d(x) + d(mask)
        f.case(name, "softmax", {}, {"x": x, "mask": mask}, safe_softmax(s))

    for n in (1, 3, 17, 63, 129):
        sm(f"softmax_n{n}", f.randn(4, n, scale=3))
    sm("softmax_large_logits", f.randn(3, 63, scale=1000))
    sm("softmax_shifted_1e4", f.randn(2, 17, shift=1e4))
    # [T, S] mask broadcast over [B, H, T, S]: a causal pattern with a fully -inf row (row 2 → all zeros).
    x = f.randn(2, 3, 5, 17)
    m = torch.triu(torch.full((5, 17), NEG_INF), diagonal=13) + f.randn(5, 17, scale=0.5)
    m[2, :] = NEG_INF
    sm("softmax_mask_TS_dead_row", x, m.to(F32))
    # Per-batch padding mask [B, 1, S] over [B, T, S].
    x = f.randn(2, 4, 129)
    m = torch.zeros(2, 1, 129)
    m[0, :, 100:] = NEG_INF
    m[1, :, 7:] = -1e9
    sm("softmax_mask_padding", x, m)
    # A [T, 1] mask (constant per row, stride 0 along the last axis): softmax must be unchanged.
    x = f.randn(2, 4, 17)
    sm("softmax_mask_col", x, f.randn(4, 1, scale=100))
    # -inf inside x itself: a dead row with no mask, and a row with a single live entry.
    x = f.randn(3, 17)
    x[0, :] = NEG_INF
    x[1, :] = NEG_INF
    x[1, 5] = 2.5
    sm("softmax_neg_inf_in_x", x)
    return f


# ---- norms ---------------------------------------------------------------------------------------------------


def layer_norm(x, gamma, beta, eps):
    n = x.shape[-1]
    return F.layer_norm(d(x), (n,), None if gamma is None else d(gamma), None if beta is None else d(beta), eps)


def rms_norm(x, gamma, eps):
    """Qwen2RMSNorm / LlamaRMSNorm: x · rsqrt(mean(x²) + eps) · γ (in float64)."""
    x = d(x)
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y if gamma is None else y * d(gamma)


def gen_norm() -> Family:
    f = Family("norm", 404)

    def ln(name, shape, gamma=True, beta=True, eps=1e-5, scale=1.0, shift=0.0):
        dd = shape[-1]
        x = f.randn(*shape, scale=scale, shift=shift)
        g = f.randn(dd, scale=0.5, shift=1.0) if gamma else None
        b = f.randn(dd, scale=0.5) if beta else None
        f.case(name, "layerNorm", {"eps": eps}, {"x": x, "gamma": g, "beta": b}, layer_norm(x, g, b, eps))

    ln("ln_3x17", (3, 17))
    ln("ln_2x5x129_eps1e-6", (2, 5, 129), eps=1e-6)
    ln("ln_offset_1e4", (4, 63), shift=1e4)  # two-pass variance: one-pass E[x²]−E[x]² loses every digit here
    ln("ln_offset_neg3e4_small_spread", (3, 129), scale=0.25, shift=-3e4)
    ln("ln_no_affine", (5, 17), gamma=False, beta=False)
    ln("ln_gamma_only", (2, 63), beta=False)
    ln("ln_d1", (3, 1))  # x − mean = 0 → β exactly
    ln("ln_d3", (7, 3))

    def rms(name, shape, gamma=True, eps=1e-6, scale=1.0, shift=0.0):
        dd = shape[-1]
        x = f.randn(*shape, scale=scale, shift=shift)
        g = f.randn(dd, scale=0.5, shift=1.0) if gamma else None
        f.case(name, "rmsNorm", {"eps": eps}, {"x": x, "gamma": g}, rms_norm(x, g, eps))

    rms("rms_3x17", (3, 17))
    rms("rms_2x5x129", (2, 5, 129), eps=1e-5)
    rms("rms_offset_1e4", (4, 63), shift=1e4)
    rms("rms_tiny_values", (2, 63), scale=1e-3)  # eps matters
    rms("rms_no_gamma", (5, 17), gamma=False)
    rms("rms_d1", (3, 1))

    def mod(name, kind, shape, beta, d_gamma, d_beta, eps=1e-6, shift=0.0):
        dd = shape[-1]
        x = f.randn(*shape, shift=shift)
        g = f.randn(dd, scale=0.5, shift=1.0)
        b = f.randn(dd, scale=0.5) if beta else None
        dg = f.randn(*shape, scale=0.3) if d_gamma else None
        db = f.randn(*shape, scale=0.3) if d_beta else None
        base = layer_norm(x, None, None, eps) if kind == "layer" else rms_norm(x, None, eps)
        scale = d(g) + (d(dg) if dg is not None else 0.0)
        shift_t = (d(b) if b is not None else 0.0) + (d(db) if db is not None else 0.0)
        out = scale * base + shift_t
        f.case(name, "modulatedNorm", {"kind": kind, "eps": eps}, {"x": x, "gamma": g, "beta": b, "dGamma": dg, "dBeta": db}, out)

    mod("mod_layer_full", "layer", (2, 5, 63), True, True, True)
    mod("mod_layer_plain", "layer", (3, 17), True, False, False, eps=1e-5)
    mod("mod_layer_no_beta_dgamma", "layer", (2, 3, 129), False, True, False)
    mod("mod_layer_dbeta_only", "layer", (4, 17), False, False, True)
    mod("mod_layer_offset_1e4", "layer", (3, 63), True, True, True, shift=1e4)
    mod("mod_rms_full_deltas", "rms", (2, 5, 63), False, True, True)
    mod("mod_rms_plain", "rms", (3, 17), False, False, False)
    mod("mod_rms_beta", "rms", (2, 129), True, False, False)
    mod("mod_rms_all", "rms", (1, 3, 17), True, True, True, eps=1e-5)
    return f


# ---- rope ----------------------------------------------------------------------------------------------------


def rotate_half(x):
    """Hugging Face (Qwen2/Llama) rotate_half."""
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def hf_rope(x, theta, offset, rotary_dim):
    """HF Qwen2RotaryEmbedding + apply_rotary_pos_emb in float64 on x [B, T, H, D]; dims ≥ rotary_dim pass through
    (the partial-rotary split of HF's GPT-NeoX/Phi)."""
    B, T, H, D = x.shape
    inv_freq = 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.int64).to(F64) / rotary_dim))
    pos = torch.arange(offset, offset + T, dtype=torch.int64).to(F64)
    freqs = torch.outer(pos, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)  # [T, rotary_dim]
    cos, sin = emb.cos(), emb.sin()
    q = d(x).transpose(1, 2)  # HF layout [B, H, T, D]
    q_rot, q_pass = q[..., :rotary_dim], q[..., rotary_dim:]
    q_embed = q_rot * cos + rotate_half(q_rot) * sin
    return torch.cat((q_embed, q_pass), dim=-1).transpose(1, 2)


def gen_rope() -> Family:
    f = Family("rope", 505)

    def rope(name, shape, theta, offset, rotary_dim=None):
        x = f.randn(*shape)
        rd = rotary_dim if rotary_dim is not None else shape[3]
        f.case(name, "rope", {"theta": theta, "offset": offset, "rotaryDim": rd}, {"x": x}, hf_rope(x, theta, offset, rd))

    rope("rope_off0_1x5x2x8", (1, 5, 2, 8), 10000.0, 0)
    rope("rope_off0_T17_H3_D64", (1, 17, 3, 64), 1000000.0, 0)
    rope("rope_off1000_2x3x3x16", (2, 3, 3, 16), 1000000.0, 1000)
    rope("rope_off1000_partial_32of64", (1, 3, 2, 64), 1000000.0, 1000, 32)
    rope("rope_off0_partial_8of12", (1, 4, 2, 12), 10000.0, 0, 8)
    rope("rope_off7_partial_2of6", (2, 3, 1, 6), 10000.0, 7, 2)
    rope("rope_decode_off32767_H14", (1, 1, 14, 64), 1000000.0, 32767)
    rope("rope_D2_T63", (1, 63, 1, 2), 10000.0, 0)
    return f


# ---- attention -----------------------------------------------------------------------------------------------


def ref_attention(q, k, v, causal=False, query_offset=0, key_length=None, scale=None, mask=None):
    """softmax(q·kᵀ·scale + mask) · v in float64, token-major [B, T, H, D]; GQA by repeat_interleave; causal means
    query t (absolute position query_offset + t) sees keys j ≤ query_offset + t; a query seeing nothing gives 0."""
    B, Tq, Hq, D = q.shape
    S, Hkv = k.shape[1], k.shape[2]
    L = S if key_length is None else key_length
    sc = 1.0 / math.sqrt(D) if scale is None else scale
    qh = d(q).permute(0, 2, 1, 3)  # [B, Hq, Tq, D]
    kh = d(k)[:, :L].permute(0, 2, 1, 3).repeat_interleave(Hq // Hkv, dim=1)  # [B, Hq, L, D]
    vh = d(v)[:, :L].permute(0, 2, 1, 3).repeat_interleave(Hq // Hkv, dim=1)
    s = torch.matmul(qh, kh.transpose(-1, -2)) * sc
    if mask is not None:
        s = s + d(mask)
    if causal:
        t = torch.arange(Tq).view(Tq, 1) + query_offset
        j = torch.arange(L).view(1, L)
        s = s.masked_fill(j > t, NEG_INF)
    p = safe_softmax(s)
    return torch.matmul(p, vh).permute(0, 2, 1, 3)


def gen_attention() -> Family:
    f = Family("attention", 606)

    def att(name, B, Tq, Hq, Hkv, D, S, causal=False, query_offset=0, key_length=None, scale=None, mask_shape=None, Dv=None, mask_fn=None):
        q = f.randn(B, Tq, Hq, D)
        k = f.randn(B, S, Hkv, D)
        v = f.randn(B, S, Hkv, Dv or D)
        mask = None
        if mask_shape is not None:
            mask = f.randn(*mask_shape)
            if mask_fn:
                mask_fn(mask)
        attrs = {"causal": causal, "queryOffset": query_offset}
        if key_length is not None:
            attrs["keyLength"] = key_length
        if scale is not None:
            attrs["scale"] = scale
        out = ref_attention(q, k, v, causal, query_offset, key_length, scale, mask)
        f.case(name, "attention", attrs, {"q": q, "k": k, "v": v, "mask": mask}, out)

    att("att_full", 2, 5, 2, 2, 16, 5)
    att("att_full_T1_S1", 1, 1, 1, 1, 3, 1)
    att("att_full_cross_Tq3_S17", 1, 3, 2, 1, 8, 17)
    att("att_causal_T17", 1, 17, 2, 2, 8, 17, causal=True)
    att("att_causal_gqa_4_2", 2, 9, 4, 2, 16, 9, causal=True)
    att("att_causal_gqa_14_2", 1, 5, 14, 2, 64, 5, causal=True)
    att("att_decode_gqa_14_2_offset20_cache32", 1, 1, 14, 2, 64, 32, causal=True, query_offset=20, key_length=21)
    att("att_decode_gqa_4_2_offset1000", 1, 1, 4, 2, 8, 1003, causal=True, query_offset=1000, key_length=1001)
    att("att_chunk_prefill_offset5", 2, 3, 4, 2, 8, 10, causal=True, query_offset=5, key_length=8)
    att("att_causal_offset_short_of_cache", 1, 4, 2, 2, 8, 12, causal=True, query_offset=3, key_length=9)
    att("att_keylength_lt_S_full", 2, 4, 2, 1, 8, 17, key_length=11)
    att("att_scale_custom", 1, 3, 2, 2, 8, 6, scale=0.3)
    att("att_dv_ne_d", 1, 4, 4, 2, 8, 7, causal=True, query_offset=3, Dv=3)

    def padding(m):  # [B, 1, 1, L]: batch 1 has its last 4 keys padded out
        m.zero_()
        m[1, ..., -4:] = NEG_INF

    att("att_mask_padding_B11L", 2, 3, 4, 2, 8, 9, mask_shape=(2, 1, 1, 9), mask_fn=padding)

    def dead_row(m):  # [1, 1, Tq, L] with query 1 masked out entirely → zeros
        m[0, 0, 1, :] = NEG_INF
        m[0, 0, 3, 0:5] = NEG_INF

    att("att_mask_TL_dead_row", 2, 4, 2, 2, 8, 13, key_length=10, mask_shape=(1, 1, 4, 10), mask_fn=dead_row)
    att("att_mask_full_shape_causal", 1, 3, 2, 1, 8, 6, causal=True, query_offset=2, key_length=5, mask_shape=(1, 2, 3, 5))
    att("att_mask_L_only", 1, 2, 2, 2, 4, 5, mask_shape=(5,))
    return f


# ---- gather: embedding, argmax, cast ------------------------------------------------------------------------


def gen_gather() -> Family:
    f = Family("gather", 707)

    def emb(name, V, D, ids_shape, table_dtype=F32):
        table = f.randn(V, D).to(table_dtype)
        ids = f.randint(0, V, *ids_shape)
        out = F.embedding(ids.to(torch.int64), d(table))
        f.case(name, "embedding", {}, {"table": table, "ids": ids}, out, cmp="exact")

    emb("emb_f32", 17, 8, (2, 5))
    emb("emb_bf16", 63, 16, (7,), torch.bfloat16)
    emb("emb_f16", 129, 3, (1, 1), torch.float16)
    emb("emb_bf16_3d_ids", 5, 129, (2, 3, 2), torch.bfloat16)
    # Out-of-range ids give zero rows: the engine's documented rule (core/backend.ts EmbeddingAttrs), not
    # PyTorch's (which raises), so this golden is built by hand.
    table = f.randn(5, 4)
    ids = torch.tensor([-1, 5, 2, 1000, 0], dtype=torch.int32)
    out = torch.zeros(5, 4, dtype=F64)
    out[2] = d(table[2])
    out[4] = d(table[0])
    f.case("emb_out_of_range_zero_rows", "embedding", {}, {"table": table, "ids": ids}, out, cmp="exact",
           why="engine-defined: out-of-range ids give zero rows (PyTorch raises)")

    def am(name, x):
        f.case(name, "argmax", {}, {"x": x}, torch.argmax(x.to(F32) if x.dtype != F32 else x, dim=-1).to(torch.int32), cmp="exact")

    am("argmax_4x17", f.randn(4, 17))
    am("argmax_2x3x129", f.randn(2, 3, 129))
    am("argmax_n1", f.randn(5, 1))
    am("argmax_n3", f.randn(7, 3))
    am("argmax_ties_first", torch.randint(0, 4, (6, 63), generator=f.gen).to(F32))  # many ties: first index wins
    x = f.randn(4, 17)
    x[0, 3] = float("nan")
    x[0, 9] = float("nan")  # NaN counts as largest, first one wins
    x[1, :] = NEG_INF  # all -inf → 0
    x[2, 16] = float("inf")
    am("argmax_nan_inf", x)
    am("argmax_bf16", f.randn(3, 63).to(torch.bfloat16))

    # Casts: exact bits against torch's .to(dtype).
    specials = [0.0, -0.0, 1.0, -1.0, 65504.0, 65519.0, 65520.0, 65536.0, -70000.0, 1e-8, 2.0 ** -25, 3 * 2.0 ** -25,
                2.0 ** -24, 6e-8, 2.0 ** -14, 2.0 ** -14 * (1 - 2.0 ** -11), 1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11,
                1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, 3.4028234663852886e38, -3.4028234663852886e38, 1e-40, -1e-45,
                float("inf"), float("-inf"), float("nan"), 3.14159265, -2.71828183, 1.00390625, 1.01171875]
    sp = torch.tensor(specials, dtype=F32)
    rnd = torch.cat([f.randn(129), f.randn(63, scale=1000), f.randn(63, scale=1e-4), f.randn(17, scale=1e-6)])
    nan_why = "NaN stays NaN; its payload is not compared (torch's vectorised f32→bf16 path writes 0xFFFF)"
    for tag, x in (("specials", sp), ("random", rnd)):
        f.case(f"cast_f32_f16_{tag}", "cast", {"dtype": "f16"}, {"x": x}, x.to(torch.float16), cmp="bits", why=nan_why)
        f.case(f"cast_f32_bf16_{tag}", "cast", {"dtype": "bf16"}, {"x": x}, x.to(torch.bfloat16), cmp="bits", why=nan_why)
    ints = torch.tensor([0.0, 0.4, -0.4, 0.5, -0.5, 0.999, -0.999, 1.0, 2.7, -2.7, 1e6 + 0.5, -1e6 - 0.5, 16777216.0,
                         2147483520.0, -2147483648.0, 123456.789, -0.0], dtype=F32)
    f.case("cast_f32_i32_trunc", "cast", {"dtype": "i32"}, {"x": ints}, ints.to(torch.int32), cmp="exact")
    h = f.randn(63, scale=100).to(torch.float16)
    f.case("cast_f16_f32", "cast", {"dtype": "f32"}, {"x": h}, h.to(F32), cmp="exact")
    f.case("cast_f16_bf16", "cast", {"dtype": "bf16"}, {"x": h}, h.to(torch.bfloat16), cmp="bits")
    f.case("cast_f16_i32", "cast", {"dtype": "i32"}, {"x": h}, h.to(torch.int32), cmp="exact")
    bfx = f.randn(63, scale=1e5).to(torch.bfloat16)
    f.case("cast_bf16_f32", "cast", {"dtype": "f32"}, {"x": bfx}, bfx.to(F32), cmp="exact")
    f.case("cast_bf16_f16", "cast", {"dtype": "f16"}, {"x": bfx}, bfx.to(torch.float16), cmp="bits")
    iv = torch.tensor([0, 1, -1, 16777217, -16777219, 2147483647, -2147483648, 123456789], dtype=torch.int32)
    f.case("cast_i32_f32", "cast", {"dtype": "f32"}, {"x": iv}, iv.to(F32), cmp="exact")
    f.case("cast_i32_bf16", "cast", {"dtype": "bf16"}, {"x": iv}, iv.to(torch.bfloat16), cmp="bits")
    return f


# ---- layout --------------------------------------------------------------------------------------------------


def gen_layout() -> Family:
    f = Family("layout", 808)

    def tr(name, x, perm):
        f.case(name, "transpose", {"perm": perm}, {"x": x}, x.permute(*perm).contiguous(), cmp="bits" if x.dtype in (torch.float16, torch.bfloat16) else "exact")

    tr("transpose_3d_201", f.randn(2, 3, 5), [2, 0, 1])
    tr("transpose_4d_0213", f.randn(2, 3, 4, 5), [0, 2, 1, 3])
    tr("transpose_2d", f.randn(17, 3), [1, 0])
    tr("transpose_identity", f.randn(3, 4), [0, 1])
    tr("transpose_bf16", f.randn(3, 5, 2).to(torch.bfloat16), [1, 2, 0])
    tr("transpose_i32", f.randint(-100, 100, 4, 1, 3), [2, 1, 0])

    def sl(name, x, begin, size):
        idx = tuple(slice(b, x.shape[i] if s == -1 else b + s) for i, (b, s) in enumerate(zip(begin, size)))
        f.case(name, "slice", {"begin": begin, "size": size}, {"x": x}, x[idx].contiguous(), cmp="exact")

    sl("slice_3d", f.randn(5, 17, 3), [1, 2, 0], [3, 15, 3])
    sl("slice_1d_tail", f.randn(129), [64], [-1])
    sl("slice_4d_kv", f.randn(1, 32, 2, 8), [0, 0, 0, 0], [1, 21, 2, 8])
    sl("slice_inner", f.randn(2, 3, 63), [1, 1, 5], [1, 2, 1])
    sl("slice_i32", f.randint(0, 1000, 4, 6), [1, 2], [2, -1])

    def cat(name, xs, axis):
        f.case(name, "concat", {"axis": axis}, {"xs": xs}, torch.cat(xs, dim=axis), cmp="bits" if xs[0].dtype in (torch.float16, torch.bfloat16) else "exact")

    cat("concat_axis1_three", [f.randn(2, 3, 4), f.randn(2, 1, 4), f.randn(2, 5, 4)], 1)
    cat("concat_axis0", [f.randn(1, 17), f.randn(3, 17)], 0)
    cat("concat_last", [f.randn(2, 3, 5), f.randn(2, 3, 1), f.randn(2, 3, 2)], 2)
    cat("concat_single", [f.randn(3, 3)], 0)
    cat("concat_bf16", [f.randn(2, 3).to(torch.bfloat16), f.randn(2, 5).to(torch.bfloat16)], 1)

    def ws(name, dst, src, axis, start):
        out = dst.clone()
        idx = [slice(None)] * dst.dim()
        idx[axis] = slice(start, start + src.shape[axis])
        out[tuple(idx)] = src
        f.case(name, "writeSlice", {"axis": axis, "start": start}, {"dst": dst, "src": src}, out, cmp="exact")

    ws("writeslice_kv_axis1", f.randn(2, 8, 3, 4), f.randn(2, 3, 3, 4), 1, 5)
    ws("writeslice_col0", f.randn(4, 17), f.randn(4, 1), 1, 0)
    ws("writeslice_axis0_end", f.randn(5, 3), f.randn(2, 3), 0, 3)
    ws("writeslice_full", f.randn(2, 3), f.randn(2, 3), 0, 0)
    x = f.randn(3, 7)
    f.case("copy_f32", "copy", {}, {"x": x}, x.clone(), cmp="exact")
    return f


# ---- vision --------------------------------------------------------------------------------------------------


def ref_patch_embed(img, w, b, p):
    y = F.conv2d(d(img), d(w), None if b is None else d(b), stride=p)  # [B, D, H/P, W/P]
    return y.flatten(2).transpose(1, 2)  # [B, tokens, D], token = row·(W/P) + col


def ref_resize(x, in_h, in_w, out_h, out_w):
    B, _, D = x.shape
    g = d(x).view(B, in_h, in_w, D).permute(0, 3, 1, 2)
    y = F.interpolate(g, size=(out_h, out_w), mode="bilinear", align_corners=False)
    return y.permute(0, 2, 3, 1).reshape(B, out_h * out_w, D)


def gen_vision() -> Family:
    f = Family("vision", 909)

    def pe(name, B, C, H, W, Dm, P, bias=True):
        img = f.randn(B, C, H, W)
        w = f.randn(Dm, C, P, P, scale=1.0 / P)
        b = f.randn(Dm) if bias else None
        f.case(name, "patchEmbed", {"patch": P}, {"image": img, "weight": w, "bias": b}, ref_patch_embed(img, w, b, P))

    pe("patch14_2x3x28x42_D17", 2, 3, 28, 42, 17, 14)
    pe("patch16_1x3x32x48_D33_nobias", 1, 3, 32, 48, 33, 16, bias=False)
    pe("patch1_pointwise", 1, 3, 3, 5, 4, 1)
    pe("patch2_C1", 2, 1, 6, 4, 3, 2)

    def rg(name, B, in_h, in_w, out_h, out_w, D, op="resizeGrid"):
        x = f.randn(B, in_h * in_w, D)
        f.case(name, op, {"inH": in_h, "inW": in_w, "outH": out_h, "outW": out_w}, {"x": x}, ref_resize(x, in_h, in_w, out_h, out_w))

    rg("resize_27x27_14x14", 1, 27, 27, 14, 14, 5)
    rg("resize_5x7_3x4", 2, 5, 7, 3, 4, 3)
    rg("resize_up_3x4_5x7", 1, 3, 4, 5, 7, 2)
    rg("resize_up_1x1_2x3", 1, 1, 1, 2, 3, 4)
    rg("resize_identity_4x4", 1, 4, 4, 4, 4, 3)
    rg("resize_17x1_3x5", 1, 17, 1, 3, 5, 2)
    # ops.downsample2x(x, 27, 27) = resizeGrid to ⌈27/2⌉ × ⌈27/2⌉ (LLaVA-OneVision's video pooling).
    rg("downsample2x_27x27", 1, 27, 27, 14, 14, 3, op="downsample2x")
    rg("downsample2x_5x7", 1, 5, 7, 3, 4, 2, op="downsample2x")
    return f


# ---- main ----------------------------------------------------------------------------------------------------


def main() -> int:
    os.makedirs(OUT_DIR, exist_ok=True)
    families = [gen_matmul(), gen_elementwise(), gen_softmax(), gen_norm(), gen_rope(), gen_attention(), gen_gather(), gen_layout(), gen_vision()]
    keep = {f"{fam.name}.safetensors" for fam in families}
    for stale in sorted(os.listdir(OUT_DIR)):
        if stale.endswith(".safetensors") and stale not in keep:
            os.remove(os.path.join(OUT_DIR, stale))
    total_bytes = 0
    total_cases = 0
    for fam in families:
        n = fam.write()
        total_bytes += n
        total_cases += len(fam.cases)
        print(f"{fam.name:12s} {len(fam.cases):3d} cases {n / 1024:8.1f} KiB")
    print(f"{'total':12s} {total_cases:3d} cases {total_bytes / 1024:8.1f} KiB -> {os.path.relpath(OUT_DIR, ROOT)}")
    if total_bytes > 2 * 1024 * 1024:
        print("error: fixtures exceed 2 MiB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
