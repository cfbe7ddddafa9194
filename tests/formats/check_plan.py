#!/usr/bin/env python3
"""Reads a plan directory the way docs/FORMATS.md tells h5py users to, and checks that plan.h5
says what plan.json says. Run by tests/test_cli.cpp; exits non-zero with the first mismatch."""
import json
import sys

import h5py
import numpy as np

out = sys.argv[1]
plan = json.load(open(f"{out}/plan.json"))
assert plan["format"] == "hiq-plan" and plan["format_version"] == 1, plan["format"]
with h5py.File(f"{out}/plan.h5", "r") as f:
    for key in ("format", "fingerprint", "solver", "status"):
        assert f.attrs[key] == plan[key], (key, f.attrs[key], plan[key])
    for key in ("bits_low", "bits_high", "group_size"):
        assert int(f.attrs[key]) == plan["spec"][key], key
    for key in ("avg_bits", "budget_avg_bits", "measured_dloss", "fixed_dloss"):
        assert float(f.attrs[key]) == plan[key], key
    assert list(f.attrs["ratios"]) == plan["ratios"]
    layers = plan["layers"]
    assert f["candidate"].dtype == np.int32 and f["candidate"].shape == (len(layers),)
    for i, layer in enumerate(layers):
        assert int(f["candidate"][i]) == layer["candidate"], layer["name"]
        assert float(f["ratio"][i]) == layer["ratio"], layer["name"]
        assert float(f["bits"][i]) == layer["bits"], layer["name"]
        channels = f["channels"][layer["name"]][()]
        assert channels.dtype == np.int32, layer["name"]
        assert channels.tolist() == layer["channels"], layer["name"]
        assert channels.tolist() == sorted(set(channels.tolist())), layer["name"]
        assert all(0 <= c < layer["shape"][1] for c in layer["channels"]), layer["name"]
    bits = sum(l["bits"] for l in layers) / sum(l["shape"][0] * l["shape"][1] for l in layers)
    assert abs(bits - plan["avg_bits"]) < 1e-12, (bits, plan["avg_bits"])
    assert plan["avg_bits"] <= plan["budget_avg_bits"]
print(f"plan OK: {len(layers)} layers, avg_bits {plan['avg_bits']:.6f}")
