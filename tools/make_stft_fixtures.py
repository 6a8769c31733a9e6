#!/usr/bin/env python3
"""Fixtures for the STFT accuracy test (Tests/StemifyEngineTests/STFTTests.swift), made by PyTorch.

Run by hand, never by tests or CI:

    .reference/bin/python tools/make_stft_fixtures.py    # -> Tests/Fixtures/ops/stftacc_*.npy

For each input kind and each transform the engine runs, it writes the input (float32), PyTorch's
float32 result (what the reference models see) and the exact result: the same transform in
float64 with a float64 window. The test holds the engine's STFT and iSTFT to at most PyTorch's
float32 error on every bin and sample (issue 30).

Input kinds: `int16` a full-band mix quantised to 16 bits (the noise floor of a CD master),
`bandlimited` low tones only, quantised (the upper bins hold only quantisation noise), `quiet`
a tone a few LSBs loud with dither. Transforms: `roformer` (n_fft 2048, hop 441, Hann),
`scnet` (n_fft 4096, hop 1024, no window, normalized), `demucs` (HTDemucs._spec: two reflect
paddings, Hann, normalized, Nyquist and edge frames dropped). Inverses: `roformer` and
`demucs` of a random spectrum.
"""
import math
from pathlib import Path

import numpy as np
import torch
from demucs.hdemucs import pad1d

OUT = Path(__file__).resolve().parent.parent / "Tests" / "Fixtures" / "ops"
LENGTH = 8192


def inputs():
    t = np.arange(LENGTH) / 44100
    rng = np.random.default_rng(30)
    full = 0.3 * np.sin(2 * np.pi * 110 * t) + 0.2 * np.sin(2 * np.pi * 1318.5 * t + 1) + 0.05 * rng.standard_normal(LENGTH)
    low = 0.4 * np.sin(2 * np.pi * 55 * t) + 0.3 * np.sin(2 * np.pi * 220 * t + 0.3)
    quiet = 3e-4 * np.sin(2 * np.pi * 440 * t) + 2e-5 * rng.standard_normal(LENGTH)
    q = lambda x: (np.round(x * 32767) / 32768).astype(np.float32)
    return {"int16": q(full), "bandlimited": q(low), "quiet": q(quiet)}


def stft(x, variant, dtype):
    """[L] -> complex [F, T] in `dtype`; the window is made in `dtype` (float32: as PyTorch's
    float32 run makes it, float64: exact)."""
    x = torch.from_numpy(x).to(dtype)[None]
    if variant == "roformer":
        w = torch.hann_window(2048, dtype=dtype)
        return torch.stft(x, 2048, 441, 2048, window=w, center=True, return_complex=True)[0]
    if variant == "scnet":
        return torch.stft(x, 4096, 1024, 4096, window=torch.ones(4096, dtype=dtype), center=True, normalized=True,
                          return_complex=True)[0]
    hl, nfft = 1024, 4096
    le = int(math.ceil(x.shape[-1] / hl))
    pad = hl // 2 * 3
    x = pad1d(x, (pad, pad + le * hl - x.shape[-1]), mode="reflect")
    z = torch.stft(x, nfft, hl, window=torch.hann_window(nfft, dtype=dtype), win_length=nfft, normalized=True,
                   center=True, return_complex=True, pad_mode="reflect")[0]
    return z[:-1, 2:2 + le]


def istft(re, im, variant, dtype, length):
    z = torch.complex(torch.from_numpy(re).to(dtype), torch.from_numpy(im).to(dtype))[None]
    if variant == "roformer":
        return torch.istft(z, 2048, 441, 2048, window=torch.hann_window(2048, dtype=dtype), center=True, length=length)[0]
    # HTDemucs._ispec: Nyquist and two edge frames on each side back as zeros, crop 3·hop/2.
    hl, nfft = 1024, 4096
    z = torch.nn.functional.pad(z, (0, 0, 0, 1))
    z = torch.nn.functional.pad(z, (2, 2))
    pad = hl // 2 * 3
    le = hl * int(math.ceil(length / hl)) + 2 * pad
    x = torch.istft(z, nfft, hl, window=torch.hann_window(nfft, dtype=dtype), win_length=nfft, normalized=True,
                    length=le, center=True)
    return x[0, pad:pad + length]


def save(name, a):
    np.save(OUT / f"stftacc_{name}.npy", np.ascontiguousarray(a))


def main():
    for kind, x in inputs().items():
        save(f"{kind}_in", x)
        for variant in ["roformer", "scnet", "demucs"]:
            z32, z64 = stft(x, variant, torch.float32), stft(x, variant, torch.float64)
            save(f"{kind}_{variant}_torch", torch.stack([z32.real, z32.imag]).numpy().astype(np.float32))
            save(f"{kind}_{variant}_exact", torch.stack([z64.real, z64.imag]).numpy().astype(np.float64))
            err32 = (z32.to(torch.complex128) - z64).abs()
            print(kind, variant, tuple(z32.shape), "torch float32 error rms %.3g" % float(err32.pow(2).mean().sqrt()))
    rng = np.random.default_rng(31)
    for variant, bins, frames, length in [("roformer", 1025, 20, 8000), ("demucs", 2048, 8, 8000)]:
        re = (rng.standard_normal((bins, frames)) * np.exp(-np.arange(bins) / 300)[:, None]).astype(np.float32)
        im = (rng.standard_normal((bins, frames)) * np.exp(-np.arange(bins) / 300)[:, None]).astype(np.float32)
        save(f"inverse_{variant}_re", re)
        save(f"inverse_{variant}_im", im)
        save(f"inverse_{variant}_torch", istft(re, im, variant, torch.float32, length).numpy().astype(np.float32))
        save(f"inverse_{variant}_exact", istft(re, im, variant, torch.float64, length).numpy().astype(np.float64))


if __name__ == "__main__":
    main()
