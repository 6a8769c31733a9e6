#!/usr/bin/env python3
"""Seed inputs for scripts/fuzz.sh, small so libFuzzer mutates them fast (run by hand, committed):

    .reference/bin/python tools/make_fuzz_corpus.py

checkpoint/: tiny torch-zip (.th, as torch.save writes them, Fraction and OrderedDict included)
and safetensors files with demucs metadata, one DiffQ-packed state; config/: a RoFormer YAML
configuration, a NUL byte, then its state dict (tiny BS- and Mel-Band RoFormers from msst);
wav/: every encoding the reader accepts; multipart/: request bodies.
"""
import io
import json
import struct
from collections import OrderedDict
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as st_save

ROOT = Path(__file__).resolve().parent.parent / "Fuzz" / "corpus"


def write(folder, name, data):
    (ROOT / folder).mkdir(parents=True, exist_ok=True)
    (ROOT / folder / name).write_bytes(data)


def checkpoints():
    kwargs = {"sources": ["drums", "bass"], "audio_channels": 2, "samplerate": 44100, "segment": Fraction(39, 5),
              "channels": 2, "depth": 1, "nfft": 64, "cac": True}
    state = OrderedDict([("encoder.0.conv.weight", torch.randn(2, 4, 8, 1).half()),
                         ("encoder.0.conv.bias", torch.randn(2).half())])
    from demucs.demucs import Demucs
    from demucs.hdemucs import HDemucs
    from demucs.htdemucs import HTDemucs
    for cls in [HTDemucs, HDemucs, Demucs]:
        klass = cls.__name__
        buf = io.BytesIO()
        torch.save({"klass": cls, "args": (), "kwargs": kwargs, "state": state, "training_args": {"seed": 1}}, buf)
        write("checkpoint", f"{klass}.th", buf.getvalue())
    meta = {"klass": "demucs.htdemucs.HTDemucs", "args": "[]",
            "kwargs": json.dumps(dict(kwargs, segment={"_type": "fraction", "numerator": 39, "denominator": 5}))}
    write("checkpoint", "htdemucs.safetensors", st_save({k: v.contiguous() for k, v in state.items()}, metadata=meta))
    # A DiffQ-shaped state: packed levels, ranges and bit widths (tools/make_fixtures.py writes real ones).
    structure = {"_dict": [["quantized", {"_list": [{"_tuple": [{"_list": [{"_tensor": "t0"}] + [None] * 13},
                                                               {"_tuple": [-1.0, 1.0]}, {"_tensor": "t1"}]}]}],
                           ["float16", {"_list": []}], ["others", {"_list": [{"_tensor": "t2"}]}],
                           ["meta", {"_dict": []}], ["__quantized", True]]}
    tensors = {"t0": torch.tensor([0x5555555555555555], dtype=torch.int64),
               "t1": torch.tensor([0], dtype=torch.uint8),
               "t2": torch.randn(2)}
    write("checkpoint", "diffq.safetensors", st_save(tensors, metadata=dict(meta, structure=json.dumps(structure))))


def wavs():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (40, 2))

    def riff(fmt_tag, bits, channels, payload, extensible=False):
        block = channels * bits // 8
        fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else fmt_tag, channels, 44100, 44100 * block, block, bits)
        if extensible:
            fmt += struct.pack("<HHI", 22, bits, 3) + struct.pack("<H", fmt_tag) + bytes(14)
        chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST" + struct.pack("<I", 3) + b"abc\x00"
        chunks += b"data" + struct.pack("<I", len(payload)) + payload
        return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks

    write("wav", "pcm8.wav", riff(1, 8, 2, ((x + 1) * 127.5).astype(np.uint8).tobytes()))
    write("wav", "pcm16.wav", riff(1, 16, 2, (x * 32767).astype("<i2").tobytes()))
    pcm24 = b"".join(int(v * 8388607).to_bytes(3, "little", signed=True) for v in x.ravel())
    write("wav", "pcm24.wav", riff(1, 24, 2, pcm24))
    write("wav", "pcm32.wav", riff(1, 32, 2, (x * 2**31 * 0.99).astype("<i4").tobytes()))
    write("wav", "float32-ext.wav", riff(3, 32, 2, x.astype("<f4").tobytes(), extensible=True))
    write("wav", "float64-mono.wav", riff(3, 64, 1, x[:, 0].astype("<f8").tobytes()))


def multipart():
    write("multipart", "form", b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nhtdemucs\r\n"
          b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
          b"RIFF\r\n--\r\n\x00\xff\r\n--b--\r\n")
    write("multipart", "preamble", b"\x10pre\r\n--b  \r\n\r\n\r\n--b--\r\nepilogue")
    write("multipart", "headers", b"bytes=0-10\n--b\r\nA: form-data; name=\"x\"; filename=\"q\\\"\"\r\nB:\r\n\r\nv\r\n--b--")
    write("multipart", "crash-highbyte", b"--b\r\n\xff\xfe: x\r\n\r\nv\r\n--b--\r\n")


def configs():
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import make_msst_fixtures as mm
    tiny = dict(dim=4, depth=1, stereo=True, num_stems=1, time_transformer_depth=1, freq_transformer_depth=1,
                dim_head=4, heads=1, stft_n_fft=64, stft_hop_length=16, stft_win_length=64, dim_freqs_in=33,
                mask_estimator_depth=1, mlp_expansion_factor=1)
    for name, klass, extra in [("bs", mm.BSRoformer, dict(freqs_per_bands=(32, 1))),
                               ("mel", mm.MelBandRoformer, dict(num_bands=3, sample_rate=44100))]:
        model_kw = dict(tiny, **extra)
        text = mm.yaml_text(model_kw, chunk=1024, overlap=2, batch=1, instruments=["vocals", "other"], target="vocals")
        model = klass(**model_kw)
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        write("config", f"{name}.yaml+ckpt", text.encode() + b"\0" + buf.getvalue())


if __name__ == "__main__":
    checkpoints()
    configs()
    wavs()
    multipart()
