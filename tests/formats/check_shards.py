#!/usr/bin/env python3
"""Dequantizes a quantized model from its HDF5 layout alone, as docs/FORMATS.md describes it
(OUT/model.h5, its plan table and its external links into OUT/shards/), and checks the result
against hiq's own weights bit for bit.

Usage: check_shards.py OUT EXPECTED.safetensors [DIGEST.txt]
DIGEST.txt, if given, is `hiq digest OUT`'s output: the digest recomputed by docs/FORMATS.md's
example from h5py alone must equal it, line for line.
EXPECTED holds, as F32, hiq's Dequantize of every layer (named by layer, or by its Hugging Face
weight name as `hiq export --dtype F32` writes it) and every unquantized tensor (named by tensor). The python examples of docs/FORMATS.md's section run on OUT too.
Run by tests/test_shard.cpp; exits non-zero with the first mismatch."""
import json
import os
import re
import sys
import textwrap

import h5py
import numpy as np


def read_safetensors(path):
    """name -> float32 array; the format is 8 bytes of header length, JSON header, data."""
    blob = open(path, "rb").read()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    data = blob[8 + n :]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (name, t["dtype"])
        begin, end = t["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype="<f4").reshape(t["shape"])
    return out


def unpack(packed, n, bits):
    """n codes of `bits` bits from an LSB-first bit stream (docs/FORMATS.md, packing)."""
    assert packed.dtype == np.uint8 and packed.shape == ((n * bits + 7) // 8,), (packed.shape, n)
    stream = np.unpackbits(packed, bitorder="little")
    assert not stream[n * bits :].any(), "padding bits must be zero"
    digits = stream[: n * bits].reshape(n, bits).astype(np.int64)
    return digits @ (np.int64(1) << np.arange(bits, dtype=np.int64))


def halves(u16):
    """FP16 bit patterns (uint16) -> float32 values, exactly."""
    assert u16.dtype == np.uint16, u16.dtype
    return u16.view(np.float16).astype(np.float32)


def group_count(n, g):
    return 0 if n == 0 else 1 if g == 0 else -(-n // g)


def layer_bits(n_out, n_in, n_high, b_l, b_h, g):
    """docs/BITS.md section 3."""
    n_low = n_in - n_high
    index_bits = 16 if n_in <= 65536 else 32
    high_params = n_out * (16 + b_h) if n_high > 0 and b_h != 16 else 0
    return (n_out * n_low * b_l + n_out * group_count(n_low, g) * (16 + b_l)
            + n_out * n_high * b_h + high_params + n_high * index_bits)


def dequantize(layer):
    a = {k: int(layer.attrs[k]) for k in
         ("n_out", "n_in", "bits_low", "bits_high", "group_size", "n_high")}
    n_out, n_in, b_l, b_h, g, n_high = (a["n_out"], a["n_in"], a["bits_low"], a["bits_high"],
                                        a["group_size"], a["n_high"])
    n_low = n_in - n_high
    n_groups = group_count(n_low, g)
    cols = layer["high_cols"][()]
    assert cols.dtype == (np.uint16 if n_in <= 65536 else np.uint32) and cols.shape == (n_high,)
    cols = cols.astype(np.int64)
    assert (np.diff(cols) > 0).all() and (cols < n_in).all()
    low_cols = np.setdiff1d(np.arange(n_in), cols)  # increasing order
    # Low part: per row, the low columns cut g at a time; group k has scale and zero [r, k].
    codes = unpack(layer["low_codes"][()], n_out * n_low, b_l).reshape(n_out, n_low)
    scales = halves(layer["low_scales"][()])
    assert scales.shape == (n_out, n_groups)
    zeros = unpack(layer["low_zeros"][()], n_out * n_groups, b_l).reshape(n_out, n_groups)
    group_of = np.arange(n_low) // (g if g > 0 else max(n_low, 1))
    w = np.zeros((n_out, n_in), dtype=np.float32)
    w[:, low_cols] = ((codes - zeros[:, group_of]).astype(np.float32) * scales[:, group_of])
    names = {"high_cols", "low_codes", "low_scales", "low_zeros"}
    if n_high > 0 and b_h == 16:
        fp16 = halves(layer["high_fp16"][()])
        assert fp16.shape == (n_out, n_high)
        w[:, cols] = fp16
        names |= {"high_fp16"}
    elif n_high > 0:
        # High part: one group per row.
        high = unpack(layer["high_codes"][()], n_out * n_high, b_h).reshape(n_out, n_high)
        scale = halves(layer["high_scales"][()])
        assert scale.shape == (n_out,)
        zero = unpack(layer["high_zeros"][()], n_out, b_h)
        w[:, cols] = (high - zero[:, None]).astype(np.float32) * scale[:, None]
        names |= {"high_codes", "high_scales", "high_zeros"}
    assert set(layer.keys()) == names, (sorted(layer.keys()), sorted(names))
    return w, layer_bits(n_out, n_in, n_high, b_l, b_h, g)


def tensor_values(group):
    dtype = group.attrs["dtype"]
    data = group["data"][()]
    if dtype == "F32":
        assert data.dtype == np.float32
        return data
    assert data.dtype == np.uint16, (dtype, data.dtype)
    if dtype == "F16":
        return data.view(np.float16).astype(np.float32)
    assert dtype == "BF16", dtype
    return (data.astype(np.uint32) << 16).view(np.float32)


def same_bits(a, b):
    """np.array_equal on float32, and the bit patterns too (it would take -0.0 for 0.0)."""
    return (a.dtype == b.dtype == np.float32 and a.shape == b.shape and np.array_equal(a, b)
            and np.array_equal(a.view(np.uint32), b.view(np.uint32)))


def run_doc_examples(out):
    """Runs the python blocks of docs/FORMATS.md's quantized-model section on OUT, in order,
    in one namespace; returns it."""
    doc_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../docs/FORMATS.md")
    doc = open(doc_path).read()
    section = doc[doc.index("## Quantized models") :]
    blocks = re.findall(r"^( *)```python\n(.*?)^ *```", section, re.S | re.M)
    assert len(blocks) >= 3, "the section's examples"
    scope = {}
    for indent, code in blocks:
        exec(textwrap.dedent(indent + code).replace("OUT/", f"{out}/"), scope)
    return scope


out, expected_path = sys.argv[1], sys.argv[2]
expected = read_safetensors(expected_path)
n_expected = len(expected)
# `hiq export` names a layer's weight as Hugging Face does ("<layer>.weight"): accept that too.
for key in list(expected):
    if key.endswith(".weight"):
        expected.setdefault(key[: -len(".weight")], expected[key])
with h5py.File(f"{out}/model.h5", "r") as f:
    assert f.attrs["format"] == "hiq-model" and f.attrs["format_version"] == 1
    n_ranks = int(f.attrs["n_ranks"])
    plan = f["plan"]
    names = json.loads(plan.attrs["names"])
    assert sorted(names) == sorted(f["layers"].keys()), "the plan lists every layer once"
    total_bits = total_weights = 0
    for i, name in enumerate(names):
        link = f["layers"].get(name, getlink=True)
        assert isinstance(link, h5py.ExternalLink), (name, link)
        assert link.filename.startswith("shards/rank-") and link.path == f"/layers/{name}"
        w, bits = dequantize(f["layers"][name])
        assert same_bits(w, expected[name]), f"layer {name} differs from hiq's Dequantize"
        assert int(plan["bits"][i]) == bits, (name, int(plan["bits"][i]), bits)
        assert int(plan["n_high"][i]) == int(f["layers"][name].attrs["n_high"]), name
        total_bits += bits
        total_weights += w.size
    for name in f["tensors"]:
        values = tensor_values(f["tensors"][name])
        assert same_bits(values, expected[name]), f"tensor {name} differs"
    assert len(names) + len(f["tensors"]) == n_expected, "every expected tensor was checked"
    avg = total_bits / total_weights
    assert abs(avg - float(f.attrs["avg_bits"])) <= 1e-12 * avg, (avg, f.attrs["avg_bits"])
    n_tensors = len(f["tensors"])
# The documented example dequantizes the low columns of q_proj of block 0 to hiq's weights.
doc = run_doc_examples(out)
low = np.setdiff1d(np.arange(doc["n_in"]), doc["cols"])
reference = expected["model.layers.0.self_attn.q_proj"]
assert same_bits(np.ascontiguousarray(doc["W"][:, low]), np.ascontiguousarray(reference[:, low]))
if len(sys.argv) > 3:
    hiq_digest = open(sys.argv[3]).read()
    recomputed = doc["digest_text"] + f"{doc['model_digest']}  model\n"
    assert recomputed == hiq_digest, f"digest differs:\n{recomputed}\nhiq digest:\n{hiq_digest}"
    print(f"digest OK: model {doc['model_digest']} recomputed from h5py")
print(f"shards OK: {len(names)} layers, {n_tensors} tensors, {n_ranks} shards, "
      f"avg_bits {avg:.6f}, bit-identical to hiq's Dequantize; docs/FORMATS.md examples run")
