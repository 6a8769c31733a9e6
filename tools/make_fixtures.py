#!/usr/bin/env python3
"""Parity fixtures for the Swift engine, made by the reference PyTorch Demucs (PyPI demucs 4.1.0).

Run by hand, never by tests or CI:

    tools/setup_reference.sh            # once: venv with CPU torch + demucs 4.1.0 in .reference/
    .reference/bin/python tools/make_fixtures.py            # small fixtures -> Tests/Fixtures
    .reference/bin/python tools/make_fixtures.py --full DIR # full-size models for benchmarks
        [--families ht,v3] [--seconds 60] [--parity-seconds 20]

What it writes (small mode), all under Tests/Fixtures:
  repo/            a folder laid out like the official model repository (`--repo`):
                   SIG-SHA8.th (legacy torch zip + pickle), SIG.safetensors (demucs 4.1.0 / HF
                   format), NAME.yaml bag files.
  audio/*.wav      deterministic input signals.
  reference/*.npy  the reference `apply_model` output (shifts=0, overlap 0.25, split) for
                   (model, signal) pairs, float32 [S, C, L], denormalised as `Separator` does.
  ops/*.npy        reference values for single ops (STFT, attention, convolutions, norms, ...).
  manifest.json    what each reference file was made from.

The models are reduced-width versions of the published constructor kwargs (same depth, nfft,
cac, DConv, bottom channels / none, 5 transformer layers with 8 heads) with a shorter segment,
so the fixtures stay small and the tests fast. Every LayerScale and norm affine is given a
realistic random value before saving: at initialisation they are 1e-3 / 1e-4 and 1 / 0,
which would hide a missing attention or DConv branch below a 60 dB parity threshold.
"""
import argparse
import contextlib
import copy
import hashlib
import io
import json
import math
import pickle
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import nn

from demucs.apply import apply_model, BagOfModels
from demucs.htdemucs import HTDemucs
from demucs.hdemucs import HDemucs
from demucs.demucs import Demucs, LocalState
from demucs.states import load_model, serialize_model
from demucs.transformer import LayerScale
from demucs.audio import convert_audio
from safetensors.torch import save as st_save

ROOT = Path(__file__).resolve().parent.parent
SOURCES4 = ["drums", "bass", "other", "vocals"]
SOURCES6 = ["drums", "bass", "other", "vocals", "guitar", "piano"]

# Published htdemucs constructor kwargs (see ../shared/notes/demucs-reference.md).
HTDEMUCS_KW = dict(
    sources=SOURCES4, audio_channels=2, samplerate=44100, segment=Fraction(39, 5),
    channels=48, growth=2, nfft=4096, cac=True, depth=4, rewrite=True, freq_emb=0.2,
    emb_scale=10, kernel_size=8, stride=4, time_stride=2, context=1, norm_starts=4,
    dconv_mode=3, dconv_depth=2, dconv_comp=8, dconv_init=1e-3, bottom_channels=512,
    t_layers=5, t_heads=8, t_hidden_scale=4.0, t_norm_first=True, t_norm_out=True,
    t_layer_scale=True, t_gelu=True, t_emb="sin",
)


# Hybrid Demucs (v3) members: hdemucs_mmi and the hybrid members of mdx / mdx_extra.
HDEMUCS_KW = dict(
    sources=SOURCES4, audio_channels=2, samplerate=44100, segment=44,
    channels=48, growth=2, nfft=4096, cac=True, depth=6, rewrite=True, hybrid=True,
    hybrid_old=False, multi_freqs=None, freq_emb=0.2, emb_scale=10, kernel_size=8,
    time_stride=2, stride=4, context=1, context_enc=0, norm_starts=4, norm_groups=4,
    dconv_mode=1, dconv_depth=2, dconv_comp=4, dconv_attn=4, dconv_lstm=4, dconv_init=1e-4,
)

# Time-domain Demucs members of mdx (the reference's defaults, with the v3 DConv branches).
DEMUCS_KW = dict(
    sources=SOURCES4, audio_channels=2, samplerate=44100, segment=44, channels=64, growth=2,
    depth=6, rewrite=True, lstm_layers=0, kernel_size=8, stride=4, context=1, gelu=True, glu=True,
    norm_starts=4, norm_groups=4, dconv_mode=1, dconv_depth=2, dconv_comp=4, dconv_attn=4,
    dconv_lstm=4, dconv_init=1e-4, normalize=True, resample=True,
)

MDX_WEIGHTS = "weights: [\n  [1., 1., 0., 0.],\n  [0., 1., 0., 0.],\n  [1., 0., 1., 1.],\n  [1., 0., 1., 1.],\n]\n"


def small(kw, **over):
    """Reduced width and segment, same structure."""
    kw = dict(kw)
    kw.update(channels=8, segment=Fraction(1, 2))
    if kw.get("bottom_channels"):
        kw["bottom_channels"] = 32
    kw.update(over)
    return kw


def randomize_affines(model, gen):
    """Give every LayerScale and norm affine a realistic value (see module docstring)."""
    for module in model.modules():
        if isinstance(module, LayerScale):
            module.scale.data.uniform_(0.1, 0.6, generator=gen)
        elif isinstance(module, (nn.GroupNorm, nn.LayerNorm)) and module.weight is not None:
            module.weight.data.copy_(1 + 0.6 * (torch.rand(module.weight.shape, generator=gen) - 0.5))
            module.bias.data.copy_(0.2 * (torch.rand(module.bias.shape, generator=gen) - 0.5))
        elif isinstance(module, LocalState) and module.ndecay:
            # Initialised at -2 (almost no decay); a spread makes the distance penalty matter.
            module.query_decay.bias.data.uniform_(-2.0, 2.0, generator=gen)


def set_conv_gains(model, gain, gen):
    """Draw every convolution's weights with standard deviation gain/sqrt(fan-in).

    At the reference's initialisation (scaled down further by `rescale`) each of the v2/v3
    decoders' un-normalised levels shrinks the signal several-fold, so at random weights the
    deepest layers reach the stems at about -70 dB and a missing BLSTM or LocalState there
    would still pass the 60 dB bar. With gains near one (a trained network's regime) they
    matter: ParityTests.sensitivityV3 measures 14-41 dB with one of them off."""
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            fan = module.weight[0].numel()
        elif isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
            stride = module.stride[0]
            fan = module.weight.shape[0] * module.weight[0, 0].numel() / stride
        else:
            continue
        with torch.no_grad():
            module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * gain / math.sqrt(fan))


def build(kw, seed, klass=HTDemucs):
    torch.manual_seed(seed)
    model = klass(**kw)
    if klass is not HTDemucs:
        set_conv_gains(model, 1.25, torch.Generator().manual_seed(seed + 2000))
    gen = torch.Generator().manual_seed(seed + 1000)
    randomize_affines(model, gen)
    model.eval()
    return model


class _StringFractionPickler(pickle.Pickler):
    """Pickles Fraction as Fraction('39/5'), the form older Pythons wrote."""
    def reducer_override(self, obj):
        if isinstance(obj, Fraction):
            return (Fraction, (str(obj),))
        return NotImplemented


class _StringFractionPickle:
    Pickler = _StringFractionPickler
    Unpickler = pickle.Unpickler
    __name__ = "pickle"


def save_th(model, folder, sig, string_fraction=False):
    """Legacy format: torch.save(serialize_model(...)) named SIG-SHA8.th (save_with_checksum)."""
    from omegaconf import OmegaConf
    package = serialize_model(model, OmegaConf.create({"seed": sig, "note": "random weights"}), half=True)
    buf = io.BytesIO()
    if string_fraction:
        torch.save(package, buf, pickle_module=_StringFractionPickle)
    else:
        torch.save(package, buf)
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()[:8]
    path = folder / f"{sig}-{sha}.th"
    path.write_bytes(data)
    return path


def _json_default(value):
    if isinstance(value, Fraction):
        return {"_type": "fraction", "numerator": value.numerator, "denominator": value.denominator}
    raise TypeError(value)


def save_safetensors(model, folder, sig):
    """demucs 4.1.0 / HuggingFace format: state as tensors, klass/args/kwargs as JSON metadata."""
    args, kwargs = model._init_args_kwargs
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "klass": f"{type(model).__module__}.{type(model).__name__}",
        "args": json.dumps(list(args), default=_json_default),
        "kwargs": json.dumps(kwargs, default=_json_default),
    }
    path = folder / f"{sig}.safetensors"
    path.write_bytes(st_save(state, metadata=metadata))
    return path


def quantizer_for(model, seed, min_size):
    """DiffQ as the mdx_q training used it (groups of 8), with per-group bit widths spread over
    2..14 so every packing width occurs (a fresh quantizer would give all groups 8 bits)."""
    from diffq import DiffQuantizer
    quantizer = DiffQuantizer(model, min_size=min_size, group_size=8)
    gen = torch.Generator().manual_seed(seed)
    for qparam in quantizer._qparams:
        qparam.logit.data.uniform_(-4.0, 2.0, generator=gen)
    return quantizer


def save_th_quantized(model, folder, sig, seed, min_size=0.004):
    """The legacy .th form of a DiffQ model: serialize_model with the quantizer."""
    from omegaconf import OmegaConf
    quantizer = quantizer_for(model, seed, min_size)
    package = serialize_model(model, OmegaConf.create({"seed": sig}), quantizer=quantizer)
    buf = io.BytesIO()
    torch.save(package, buf)
    data = buf.getvalue()
    path = folder / f"{sig}-{hashlib.sha256(data).hexdigest()[:8]}.th"
    path.write_bytes(data)
    return path


def _flatten_state(state):
    """Nested DiffQ state -> flat tensors + JSON structure (the inverse of demucs/hf.py
    `_unflatten_state`; HF's tools/export_hf.py is not in the wheel)."""
    tensors = {}

    def flat(node):
        if isinstance(node, torch.Tensor):
            key = f"t{len(tensors)}"
            tensors[key] = node.contiguous()
            return {"_tensor": key}
        if isinstance(node, dict):
            return {"_dict": [[k, flat(v)] for k, v in node.items()]}
        if isinstance(node, list):
            return {"_list": [flat(v) for v in node]}
        if isinstance(node, tuple):
            return {"_tuple": [flat(v) for v in node]}
        if isinstance(node, type):
            return {"_class": f"{node.__module__}.{node.__name__}"}
        return node
    return tensors, flat(state)


def save_safetensors_quantized(model, folder, sig, seed, min_size=0.004):
    """The HuggingFace form of a DiffQ model: packed tensors plus a `structure` metadata entry."""
    from demucs.states import get_state
    quantizer = quantizer_for(model, seed, min_size)
    state = get_state(model, quantizer)
    tensors, structure = _flatten_state(state)
    args, kwargs = model._init_args_kwargs
    metadata = {
        "klass": f"{type(model).__module__}.{type(model).__name__}",
        "args": json.dumps(list(args), default=_json_default),
        "kwargs": json.dumps(kwargs, default=_json_default),
        "structure": json.dumps(structure),
    }
    path = folder / f"{sig}.safetensors"
    path.write_bytes(st_save(tensors, metadata=metadata))
    return path


def signal(seconds, channels=2, samplerate=44100, seed=0):
    """Deterministic test signal: a few partials, a decaying click train and seeded noise."""
    n = int(round(seconds * samplerate))
    t = np.arange(n) / samplerate
    rng = np.random.default_rng(seed)
    out = np.zeros((channels, n), dtype=np.float64)
    for c in range(channels):
        for k, f in enumerate([110.0, 220.0 * (1 + 0.01 * c), 587.3, 1318.5, 5000.0]):
            out[c] += 0.12 / (k + 1) * np.sin(2 * np.pi * f * t + c + k)
        clicks = (np.arange(n) % (samplerate // 4)) < 200
        out[c] += 0.3 * clicks * np.exp(-(np.arange(n) % (samplerate // 4)) / 60.0)
        out[c] += 0.05 * rng.standard_normal(n)
    return out.astype(np.float32)


def music(seconds, channels=2, samplerate=44100, seed=0, bits=16):
    """A synthetic mix [C, L]: bass line, chord pad, kick, hi-hat bursts, vibrato lead, quantised
    to `bits` (16: the noise floor of a CD master; 32: float, unquantised)."""
    n = int(round(seconds * samplerate))
    t = np.arange(n) / samplerate
    rng = np.random.default_rng(seed)
    beat = 60 / rng.uniform(90, 130)
    out = np.zeros((channels, n))
    notes = 41.2 * 2 ** (rng.integers(0, 12, 4) / 12)
    bass = notes[(t / (2 * beat)).astype(int) % 4]
    for c in range(channels):
        out[c] += 0.25 * np.sin(2 * np.pi * np.cumsum(bass) / samplerate)
        for f0 in 220 * 2 ** (np.array([0, 4, 7]) / 12):
            out[c] += 0.05 * np.sin(2 * np.pi * f0 * (1 + 0.002 * c) * t + rng.uniform(0, 2 * np.pi))
        ph = t % beat
        out[c] += 0.5 * np.exp(-30 * ph) * np.sin(2 * np.pi * (50 + 100 * np.exp(-40 * ph)) * ph)
        out[c] += 0.08 * np.exp(-80 * (t % (beat / 2))) * rng.standard_normal(n)
        out[c] += 0.1 * np.sin(2 * np.pi * 660 * t + 3 * np.sin(2 * np.pi * 5.5 * t) + c)
    out = np.clip(out, -1, 1)
    if bits < 32:
        scale = 2 ** (bits - 1)
        out = np.round(out * (scale - 1)) / scale
    return out.astype(np.float32)


def _spectro64(x, n_fft=512, hop_length=None, pad=0):
    """demucs.spec.spectro computed in float64 (window included), rounded to complex64 after."""
    *other, length = x.shape
    z = torch.stft(x.reshape(-1, length).double(), n_fft * (1 + pad), hop_length or n_fft // 4,
                   window=torch.hann_window(n_fft, dtype=torch.float64), win_length=n_fft, normalized=True,
                   center=True, return_complex=True, pad_mode="reflect")
    _, freqs, frames = z.shape
    return z.to(torch.complex64).view(*other, freqs, frames)


def _ispectro64(z, hop_length=None, length=None, pad=0):
    """demucs.spec.ispectro computed in float64, rounded to float32 after."""
    *other, freqs, frames = z.shape
    n_fft = 2 * freqs - 2
    win_length = n_fft // (1 + pad)
    x = torch.istft(z.reshape(-1, freqs, frames).to(torch.complex128), n_fft, hop_length,
                    window=torch.hann_window(win_length, dtype=torch.float64), win_length=win_length,
                    normalized=True, length=length, center=True)
    return x.float().view(*other, x.shape[-1])


@contextlib.contextmanager
def float64_stft():
    """While inside, the reference's hybrid models take their STFT pair in float64. A magnitude
    member gives its stems the mixture's phase, which on bins at the noise floor is decided by the
    FFT's rounding: the distance between this run and the plain one (the reference's spread) is
    the most any implementation can be held to there (issue 30)."""
    import demucs.hdemucs
    import demucs.htdemucs
    saved = {m: (m.spectro, m.ispectro) for m in (demucs.hdemucs, demucs.htdemucs)}
    try:
        for m in saved:
            m.spectro, m.ispectro = _spectro64, _ispectro64
        yield
    finally:
        for m, (a, b) in saved.items():
            m.spectro, m.ispectro = a, b


def snr_db(ref, est):
    return 10 * math.log10(float((ref ** 2).sum()) / max(float(((ref - est) ** 2).sum()), 1e-30))


def write_wav(path, data, samplerate, int16=False):
    """[C, L] float32 -> WAV (float32, or 16-bit PCM)."""
    import soundfile as sf
    sf.write(str(path), data.T, samplerate, subtype="PCM_16" if int16 else "FLOAT")


def read_wav(path):
    import soundfile as sf
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(data.T)), sr


def separate(model, wav, shifts=0):
    """The reference `Separator.separate_tensor` (shifts=0 is deterministic).

    With shifts, returns the output and the offsets the reference drew, so the engine can be
    given the same ones."""
    import demucs.apply
    drawn = []
    original = demucs.apply.random.randint

    def recording(a, b):
        value = original(a, b)
        drawn.append(value)
        return value

    ref = wav.mean(0)
    mean = ref.mean()
    std = ref.std() + 1e-8
    demucs.apply.random.randint = recording
    try:
        with torch.no_grad():
            out = apply_model(model, ((wav - mean) / std)[None], shifts=shifts, split=True, overlap=0.25)
    finally:
        demucs.apply.random.randint = original
    out = (out * std + mean)[0]
    return (out, drawn) if shifts else out


def load_bag(repo, name):
    """Load a bag the way the reference's local repository does (yaml + member files)."""
    import yaml
    bag = yaml.safe_load((repo / f"{name}.yaml").read_text())
    models = []
    for sig in bag["models"]:
        files = sorted(repo.glob(f"{sig}-*.th")) + sorted(repo.glob(f"{sig}.th"))
        if files:
            models.append(load_model(files[0]))
        else:
            from demucs.hf import load_safetensors_model
            models.append(load_safetensors_model(repo / f"{sig}.safetensors"))
    return BagOfModels(models, bag.get("weights"), bag.get("segment"))


def snr(ref, est):
    return 10 * math.log10(float((ref ** 2).sum()) / max(float(((ref - est) ** 2).sum()), 1e-30))


def make_small():
    fx = ROOT / "Tests" / "Fixtures"
    repo, audio, refdir = fx / "repo", fx / "audio", fx / "reference"
    for d in (repo, audio, refdir):
        d.mkdir(parents=True, exist_ok=True)
        for old in d.iterdir():
            old.unlink()
    torch.set_num_threads(2)

    # Models. Signatures are 8 hex digits like the published ones.
    ht = build(small(HTDEMUCS_KW), seed=1)
    save_th(ht, repo, "a1c0ffee")
    ht6 = build(small(HTDEMUCS_KW, sources=SOURCES6, bottom_channels=0), seed=2)
    save_safetensors(ht6, repo, "b6c0ffee")
    # A htdemucs_ft-shaped bag: one-hot weights. Two distinct members, each used for two
    # stems, keep the fixture small while a member mix-up still changes the numbers.
    for i in range(2):
        member = build(small(HTDEMUCS_KW), seed=10 + i)
        save_th(member, repo, f"f{i}c0ffee", string_fraction=(i == 1))
    ft_sigs = ["f0c0ffee", "f1c0ffee", "f1c0ffee", "f0c0ffee"]
    (repo / "ht_small.yaml").write_text("models: ['a1c0ffee']\n")
    (repo / "ht6s_small.yaml").write_text("models: ['b6c0ffee']\n")
    (repo / "htft_small.yaml").write_text(
        "models: [" + ", ".join(f"'{s}'" for s in ft_sigs) + "]\n"
        "weights: [\n  [1., 0., 0., 0.],\n  [0., 1., 0., 0.],\n  [0., 0., 1., 0.],\n  [0., 0., 0., 1.],\n]\n")

    # Part 2 families at width 4 (the deep layers keep the published LSTM / LocalState layout).
    hd = build(small(HDEMUCS_KW, channels=4), seed=20, klass=HDemucs)
    save_th(hd, repo, "c0ffee20")
    hdmag = build(small(HDEMUCS_KW, channels=4, cac=False, hybrid_old=True), seed=21, klass=HDemucs)
    save_safetensors(hdmag, repo, "c0ffee21")
    hdmulti = build(small(HDEMUCS_KW, channels=4, multi_freqs=[0.1, 0.3]), seed=22, klass=HDemucs)
    save_th(hdmulti, repo, "c0ffee22")
    # Magnitude output without the old padding (the mdx_extra member kind hdmag does not cover).
    hdmag2 = build(small(HDEMUCS_KW, channels=4, cac=False), seed=23, klass=HDemucs)
    save_th(hdmag2, repo, "c0ffee23")
    for i in range(2):
        save_th(build(small(DEMUCS_KW, channels=4), seed=30 + i, klass=Demucs), repo, f"c0ffee3{i}")
    (repo / "hd_small.yaml").write_text("models: ['c0ffee20']\n")
    (repo / "hdmag_small.yaml").write_text("models: ['c0ffee21']\n")
    (repo / "hdmulti_small.yaml").write_text("models: ['c0ffee22']\n")
    (repo / "hdmag2_small.yaml").write_text("models: ['c0ffee23']\n")
    (repo / "demucs_small.yaml").write_text("models: ['c0ffee30']\n")
    # Every bag member alone too: a bag's average hides a bad member.
    (repo / "demucs31_small.yaml").write_text("models: ['c0ffee31']\n")
    (repo / "qdemucs_small.yaml").write_text("models: ['c0ffee40']\nsegment: 0.4\n")
    (repo / "qhdmag_small.yaml").write_text("models: ['c0ffee42']\nsegment: 0.4\n")
    # Like mdx: two waveform and two hybrid members, a weight matrix and a bag segment.
    (repo / "mdx_small.yaml").write_text(
        "models: ['c0ffee30', 'c0ffee31', 'c0ffee21', 'c0ffee20']\n" + MDX_WEIGHTS + "segment: 0.4\n")
    # Like mdx_q: DiffQ-quantized members, one per file format.
    qd = build(small(DEMUCS_KW, channels=4), seed=40, klass=Demucs)
    save_th_quantized(qd, repo, "c0ffee40", seed=41)
    qh = build(small(HDEMUCS_KW, channels=4, cac=False), seed=42, klass=HDemucs)
    save_safetensors_quantized(qh, repo, "c0ffee42", seed=43)
    (repo / "mdxq_small.yaml").write_text(
        "models: ['c0ffee40', 'c0ffee42']\nweights: [[1., 1., 0., 0.5], [0.5, 1., 1., 1.]]\nsegment: 0.4\n")

    # Signals: shorter than one segment (0.5 s), and spanning several segments.
    write_wav(audio / "short.wav", signal(0.3, seed=1), 44100)
    write_wav(audio / "long.wav", signal(1.1, seed=2), 44100)
    # Mono 16-bit at 22.05 kHz: exercises channel conversion and the sinc resampler.
    write_wav(audio / "mono22k.wav", signal(0.3, channels=1, samplerate=22050, seed=3), 22050, int16=True)
    # Mono at the model's rate, full band.
    write_wav(audio / "mono44k.wav", signal(0.7, channels=1, seed=5), 44100)
    # Digital silence at both ends (0.3 s each), 1.3 s: every chunk boundary case at once.
    gaps = signal(1.3, seed=4)
    gaps[:, :13230] = 0
    gaps[:, -13230:] = 0
    write_wav(audio / "gaps.wav", gaps, 44100)

    manifest = {"generator": "tools/make_fixtures.py", "demucs": "4.1.0",
                "torch": torch.__version__, "cases": []}
    cases = [
        ("ht_small", "short"), ("ht_small", "long"), ("ht6s_small", "short"),
        ("htft_small", "short"), ("ht_small", "mono22k"),
        ("hd_small", "long"), ("hdmag_small", "short"), ("hdmulti_small", "short"),
        ("demucs_small", "long"), ("mdx_small", "short"), ("mdxq_small", "short"),
        # Each variant shorter than a segment and over several, mono, another rate, silence at
        # both ends, and every bag member alone (issue 10). The magnitude members are not run on
        # `gaps` or `mono22k`: digital silence and an empty upper band (upsampled audio) leave
        # mixture bins at round-off level, whose phase the reference takes from its FFT's
        # rounding, so it is not one function there (see HDemucs.withMixturePhase).
        ("hd_small", "short"), ("hd_small", "gaps"), ("hd_small", "mono22k"),
        ("hdmag_small", "long"), ("hdmag_small", "mono44k"),
        ("hdmag2_small", "short"), ("hdmag2_small", "long"), ("hdmag2_small", "mono44k"),
        ("hdmulti_small", "long"), ("hdmulti_small", "gaps"),
        ("ht_small", "gaps"), ("ht6s_small", "long"), ("htft_small", "long"),
        ("demucs_small", "short"), ("demucs_small", "gaps"), ("demucs31_small", "long"),
        ("qdemucs_small", "long"), ("qhdmag_small", "long"), ("qhdmag_small", "short"),
        ("mdx_small", "long"), ("mdxq_small", "long"),
    ]
    for name, sig_name in cases:
        # Reload from disk with the reference loader, so the fp16-rounded weights are used.
        model = load_bag(repo, name)
        wav, sr = read_wav(audio / f"{sig_name}.wav")
        wav = convert_audio(wav, sr, model.samplerate, model.audio_channels)
        out = separate(model, wav).numpy().astype(np.float32)
        np.save(refdir / f"{name}__{sig_name}.npy", out)
        manifest["cases"].append({"model": name, "signal": sig_name, "sources": model.sources,
                                  "shape": list(out.shape)})
        print(f"{name} / {sig_name}: {out.shape}", file=sys.stderr)

    # The shift trick, with the offsets the reference drew recorded for the engine.
    import random
    random.seed(5)
    model = load_bag(repo, "ht_small")
    wav, _ = read_wav(audio / "long.wav")
    out, drawn = separate(model, wav, shifts=2)
    np.save(refdir / "ht_small__long__shifts2.npy", out.numpy().astype(np.float32))
    manifest["shifts"] = {"model": "ht_small", "signal": "long", "shifts": 2, "offsets": drawn}

    (fx / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    make_ops(fx / "ops")
    add_noise_floor_cases(fx)


# Inputs whose mixture has bins at the noise floor: a 16-bit mix as a clip shorter than the
# segment (zero-padded into it) and over several segments, digital silence, an empty upper band
# (22.05 kHz upsampled). Magnitude members give those bins the mixture's phase, which the FFT's
# rounding decides, so each stem is held to min(60 dB, the reference's spread - 1.5 dB): the
# spread, recorded per stem, is the plain reference against itself with a float64 STFT (issue 30).
NOISE_FLOOR_CASES = [
    ("hdmag_small", "music16s"), ("hdmag_small", "music16l"), ("hdmag2_small", "music16s"),
    ("hdmag2_small", "gaps"), ("hdmag_small", "mono22k"), ("hdmag2_small", "mono22k"),
    ("mdx_small", "music16s"), ("mdx_small", "music16l"), ("qhdmag_small", "music16s"), ("hd_small", "music16s"),
]


def convert_audio_float64(path, model):
    """convert_audio in float64 (julius' kernel built and applied in float64), rounded to float32
    after: an upsampled track's empty upper band is the resampler's rounding, part of the spread."""
    wav, sr = read_wav(path)
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return convert_audio(wav.double(), sr, model.samplerate, model.audio_channels).float()
    finally:
        torch.set_default_dtype(saved)


def add_noise_floor_cases(fx: Path):
    """Adds NOISE_FLOOR_CASES to the fixtures in `fx` (its repo, audio and manifest kept)."""
    audio, refdir, repo = fx / "audio", fx / "reference", fx / "repo"
    write_wav(audio / "music16s.wav", music(0.2, seed=6), 44100, int16=True)
    write_wav(audio / "music16l.wav", music(1.2, seed=7), 44100, int16=True)
    manifest = json.loads((fx / "manifest.json").read_text())
    manifest["cases"] = [c for c in manifest["cases"] if (c["model"], c["signal"]) not in set(NOISE_FLOOR_CASES)]
    for name, sig_name in NOISE_FLOOR_CASES:
        model = load_bag(repo, name)
        wav, sr = read_wav(audio / f"{sig_name}.wav")
        wav = convert_audio(wav, sr, model.samplerate, model.audio_channels)
        out = separate(model, wav).numpy().astype(np.float32)
        with float64_stft():
            exact = separate(load_bag(repo, name), convert_audio_float64(audio / f"{sig_name}.wav", model)).numpy()
        spread = [round(snr_db(out[k], exact[k]), 1) for k in range(out.shape[0])]
        np.save(refdir / f"{name}__{sig_name}.npy", out)
        manifest["cases"].append({"model": name, "signal": sig_name, "sources": model.sources,
                                  "shape": list(out.shape), "spread": spread})
        print(f"{name} / {sig_name}: {out.shape}, spread {spread}", file=sys.stderr)
    (fx / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def make_ops(folder: Path):
    """Reference values for single ops: inputs, weights and outputs as float32 .npy."""
    import julius
    from torch.nn import functional as F
    from demucs.transformer import create_sin_embedding, create_2d_sin_embedding
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    torch.manual_seed(123)

    def save(name, t):
        np.save(folder / f"{name}.npy", t.detach().float().contiguous().numpy().astype(np.float32))

    # STFT and iSTFT exactly as HTDemucs uses them (two-stage reflect padding, frame crop).
    ht = HTDemucs(**small(HTDEMUCS_KW))
    x = torch.randn(1, 2, 5000)
    z = ht._spec(x)
    save("stft_in", x[0]); save("stft_re", z[0].real); save("stft_im", z[0].imag)
    zr = torch.randn(1, 2, 2048, 5, dtype=torch.complex64)
    save("istft_re", zr[0].real); save("istft_im", zr[0].imag); save("istft_out", ht._ispec(zr, 5000)[0])
    # Short input: pad1d's zero-extension rule (length <= padding).
    xs = torch.randn(1, 2, 700)
    zs = ht._spec(xs)
    save("stft_short_in", xs[0]); save("stft_short_re", zs[0].real); save("stft_short_im", zs[0].imag)

    # The magnitude path's mask (`HDemucs._mask` with cac=False): the mixture's phase on
    # estimated magnitudes, with exact zero bins and every sign of zero on both axes.
    hdm = HDemucs(**small(HDEMUCS_KW, channels=4, cac=False))
    zm = torch.randn(1, 2, 16, 40, dtype=torch.complex64)
    edge = [0.0, -0.0, 1.5, -1.5]
    for i, (a, b) in enumerate([(x, y) for x in edge for y in edge]):
        zm[0, i % 2, i, :3] = torch.complex(torch.tensor(a), torch.tensor(b))
    zm[0, :, :, 35:] = 0
    mm = torch.rand(1, 4, 2, 16, 40) * 2
    masked = hdm._mask(zm.clone(), mm)
    save("mask_mix_re", zm[0].real); save("mask_mix_im", zm[0].imag); save("mask_magnitude", mm[0])
    save("mask_out_re", masked[0].real); save("mask_out_im", masked[0].imag)

    save("sin_emb", create_sin_embedding(12, 16)[:, 0, :])
    save("sin2d_emb", create_2d_sin_embedding(16, 3, 5)[0])

    mha = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    q, kv = torch.randn(1, 7, 16), torch.randn(1, 9, 16)
    with torch.no_grad():
        mha.in_proj_bias.uniform_(-0.5, 0.5); mha.out_proj.bias.uniform_(-0.5, 0.5)
        save("mha_in_proj_weight", mha.in_proj_weight); save("mha_in_proj_bias", mha.in_proj_bias)
        save("mha_out_proj_weight", mha.out_proj.weight); save("mha_out_proj_bias", mha.out_proj.bias)
        save("mha_q", q[0]); save("mha_kv", kv[0])
        save("mha_cross_out", mha(q, kv, kv, need_weights=False)[0][0])
        save("mha_self_out", mha(q, q, q, need_weights=False)[0][0])

    def conv_case(name, module, shape):
        inp = torch.randn(*shape)
        with torch.no_grad():
            out = module(inp[None])[0]
        save(f"{name}_in", inp); save(f"{name}_weight", module.weight); save(f"{name}_bias", module.bias); save(f"{name}_out", out)

    conv_case("conv2d_k8s4", nn.Conv2d(3, 5, [8, 1], [4, 1], [2, 0]), (3, 64, 6))
    conv_case("conv2d_3x3", nn.Conv2d(4, 6, 3, 1, 1), (4, 10, 7))
    conv_case("convtr2d", nn.ConvTranspose2d(5, 3, [8, 1], [4, 1]), (5, 16, 6))
    conv_case("convtr1d", nn.ConvTranspose1d(4, 3, 8, 4), (4, 20))
    conv_case("conv1d_dilated", nn.Conv1d(4, 6, 3, dilation=2, padding=2), (4, 30))
    conv_case("conv1d_k8s4", nn.Conv1d(2, 4, 8, 4, 2), (2, 64))

    gn = nn.GroupNorm(4, 8)
    ln = nn.LayerNorm(16)
    with torch.no_grad():
        for mod in (gn, ln):
            mod.weight.uniform_(0.5, 1.5); mod.bias.uniform_(-0.5, 0.5)
        g_in = torch.randn(8, 5, 6) * 3 + 1
        save("groupnorm_in", g_in); save("groupnorm_weight", gn.weight); save("groupnorm_bias", gn.bias)
        save("groupnorm_out", gn(g_in[None])[0])
        l_in = torch.randn(7, 16) * 2 - 1
        save("layernorm_in", l_in); save("layernorm_weight", ln.weight); save("layernorm_bias", ln.bias)
        save("layernorm_out", ln(l_in))
        a_in = torch.linspace(-6, 6, 1001)
        save("gelu_in", a_in); save("gelu_out", F.gelu(a_in))
        glu_in = torch.randn(6, 10)
        save("glu_in", glu_in); save("glu_out", F.glu(glu_in, dim=0))
        std_in = torch.randn(3, 50) * 2 + 0.5
        save("std_in", std_in); save("std_out", torch.stack([std_in.mean(), std_in.std()]))

    for src in (22050, 48000):
        r_in = torch.randn(2, 1000)
        save(f"resample_{src}_in", r_in); save(f"resample_{src}_out", julius.resample_frac(r_in, src, 44100))

    # BLSTM as in the deep DConv branches, on more steps than one window (framed and stitched).
    from demucs.demucs import BLSTM
    blstm = BLSTM(6, layers=2, max_steps=200, skip=True).eval()
    b_in = torch.randn(6, 450)
    with torch.no_grad():
        save("blstm_in", b_in)
        save("blstm_out", blstm(b_in[None])[0])
        save("blstm_short_in", b_in[:, :150])
        save("blstm_short_out", blstm(b_in[None, :, :150])[0])
    for name, value in blstm.state_dict().items():
        save(f"blstm.{name}", value)
    local = LocalState(8, heads=4, ndecay=4).eval()
    with torch.no_grad():
        local.query_decay.bias.uniform_(-2, 2)
        l_in = torch.randn(8, 37)
        save("localstate_in", l_in)
        save("localstate_out", local(l_in[None])[0])
    for name, value in local.state_dict().items():
        save(f"localstate.{name}", value)
    up_in = torch.randn(2, 301)
    save("resample_up_in", up_in); save("resample_up_out", julius.resample_frac(up_in, 1, 2))
    save("resample_down_out", julius.resample_frac(up_in, 2, 1))



def make_full(out: Path, seconds: float, parity_seconds: float, families):
    """Full-size random-weight models for benchmarks and by-hand parity, under the published
    names and signatures (the files are not the published weights)."""
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    names = []
    if "ht" in families:
        ht = build(HTDEMUCS_KW, seed=100)
        save_th(ht, out, "955717e8")
        (out / "htdemucs.yaml").write_text("models: ['955717e8']\n")
        ht6 = build(dict(HTDEMUCS_KW, sources=SOURCES6, bottom_channels=0), seed=101)
        save_th(ht6, out, "5c90dfd2")
        (out / "htdemucs_6s.yaml").write_text("models: ['5c90dfd2']\n")
        sigs = ["f7e0c4bc", "d12395a8", "92cfc3b6", "04573f0d"]
        for i, sig in enumerate(sigs):
            save_safetensors(build(HTDEMUCS_KW, seed=200 + i), out, sig)
        (out / "htdemucs_ft.yaml").write_text(
            "models: [" + ", ".join(f"'{s}'" for s in sigs) + "]\n"
            "weights: [\n  [1., 0., 0., 0.],\n  [0., 1., 0., 0.],\n  [0., 0., 1., 0.],\n  [0., 0., 0., 1.],\n]\n")
        names += ["htdemucs", "htdemucs_6s", "htdemucs_ft"]
    if "v3" in families:
        # The variants the issue names, spread over the bags' members.
        variants = [dict(), dict(cac=False, hybrid_old=True), dict(multi_freqs=[0.1, 0.3]), dict(cac=False)]
        save_th(build(HDEMUCS_KW, seed=300, klass=HDemucs), out, "75fc33f5")
        (out / "hdemucs_mmi.yaml").write_text("models: ['75fc33f5']\nsegment: 44\n")
        extra = ["e51eebcc", "a1d90b5c", "5d2d6c55", "cfa93e08"]
        for i, sig in enumerate(extra):
            save_th(build(dict(HDEMUCS_KW, **variants[i]), seed=310 + i, klass=HDemucs), out, sig)
        (out / "mdx_extra.yaml").write_text("models: [" + ", ".join(f"'{s}'" for s in extra) + "]\nsegment: 44\n")
        mdx = ["0d19c1c6", "7ecf8ec1", "c511e2ab", "7d865c68"]
        save_th(build(DEMUCS_KW, seed=320, klass=Demucs), out, mdx[0])
        save_th(build(DEMUCS_KW, seed=321, klass=Demucs), out, mdx[1])
        save_th(build(dict(HDEMUCS_KW, **variants[1]), seed=322, klass=HDemucs), out, mdx[2])
        save_th(build(dict(HDEMUCS_KW, **variants[2]), seed=323, klass=HDemucs), out, mdx[3])
        (out / "mdx.yaml").write_text("models: [" + ", ".join(f"'{s}'" for s in mdx) + "]\n" + MDX_WEIGHTS + "segment: 44\n")
        # Quantized bags: DiffQ at the published settings (min_size 0.2 MB, groups of 8).
        q = ["6b9c2ca1", "b72baf4e", "42e558d4", "305bc58f"]
        for i, sig in enumerate(q):
            model = build(DEMUCS_KW, seed=330 + i, klass=Demucs) if i < 2 else \
                build(dict(HDEMUCS_KW, **variants[i - 1]), seed=330 + i, klass=HDemucs)
            quantized_saver = save_th_quantized if i % 2 == 0 else save_safetensors_quantized
            quantized_saver(model, out, sig, seed=340 + i, min_size=0.2)
        (out / "mdx_q.yaml").write_text("models: [" + ", ".join(f"'{s}'" for s in q) + "]\n" + MDX_WEIGHTS + "segment: 44\n")
        names += ["hdemucs_mmi", "mdx_extra", "mdx", "mdx_q"]
    if "v3q" in families:
        # mdx_extra_q: four quantized hybrid members, both file forms, all four variants.
        variants = [dict(), dict(cac=False, hybrid_old=True), dict(multi_freqs=[0.1, 0.3]), dict(cac=False)]
        q = ["83fc094f", "464b36d7", "14fc6a69", "7fd6ef75"]
        for i, sig in enumerate(q):
            model = build(dict(HDEMUCS_KW, **variants[i]), seed=350 + i, klass=HDemucs)
            quantized_saver = save_th_quantized if i % 2 == 0 else save_safetensors_quantized
            quantized_saver(model, out, sig, seed=360 + i, min_size=0.2)
        (out / "mdx_extra_q.yaml").write_text("models: [" + ", ".join(f"'{s}'" for s in q) + "]\nsegment: 44\n")
        names += ["mdx_extra_q"]
    write_wav(out / f"bench{int(seconds)}.wav", signal(seconds, seed=7), 44100)
    write_wav(out / "parity.wav", signal(parity_seconds, seed=8), 44100)
    for name in names:
        model = load_bag(out, name)
        wav, _ = read_wav(out / "parity.wav")
        np.save(out / f"parity__{name}.npy", separate(model, wav).numpy().astype(np.float32))
        print(f"reference parity output for {name} written", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", type=Path, help="write full-size models and signals to this folder")
    parser.add_argument("--seconds", type=float, default=60.0, help="benchmark signal length (--full)")
    parser.add_argument("--parity-seconds", type=float, default=20.0, help="parity signal length (--full)")
    parser.add_argument("--noise-floor-cases", action="store_true",
                        help="only (re)write the noise-floor cases into the existing small fixtures")
    parser.add_argument("--families", default="ht,v3,v3q",
                        help="model families for --full: ht (v4), v3 (hdemucs_mmi, mdx, mdx_extra, mdx_q), v3q (mdx_extra_q)")
    args = parser.parse_args()
    if args.full:
        make_full(args.full, args.seconds, args.parity_seconds, args.families.split(","))
    elif args.noise_floor_cases:
        add_noise_floor_cases(Path(__file__).resolve().parent.parent / "Tests" / "Fixtures")
    else:
        make_small()


if __name__ == "__main__":
    main()
