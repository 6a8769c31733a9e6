#!/usr/bin/env python3
"""Parity fixtures for the RoFormer families, made by the reference `msst` 0.1.0.

Run by hand, never by tests or CI:

    tools/setup_reference.sh                               # once (installs msst --no-deps too)
    .reference/bin/python tools/make_msst_fixtures.py      # small fixtures -> Tests/Fixtures/msst
    .reference/bin/python tools/make_msst_fixtures.py --only scnet_large_default,bs_default
        # (re)write only these entries, keeping the others and merging the manifest

What it writes (small mode), under Tests/Fixtures/msst:
  NAME.yaml, NAME.ckpt  a model folder entry as Music-Source-Separation-Training publishes them:
                        the YAML config (with `!!python/tuple` tags) and a torch.save'd state
                        dict (plain, or nested under `state_dict` with `module.` prefixes).
  NAME-SIGNAL.npy       `msst.utils.model_utils.demix` output, float32 [S, C, L].
  mel_bands.json        the bins of each band of `MelBandRoformer` for several band counts.
  manifest.json         what each reference file was made from.

The models keep the published band layouts, STFT and depth structure at reduced width. Two
weight draws:
  trained-like (`*_small`)    every RMSNorm gain and bias drawn away from its initial value
                              (1 / 0) and the Linear weights at a gain that keeps activations near
                              unit scale, so a missing sub-layer cannot hide below the parity bar;
  default init (`*_default`)  PyTorch's own initialisation of every layer (seeded), then every
                              norm's gain 1 + 0.3·N(0, 1) and bias 0.1·N(0, 1). Its stems peak
                              over full scale (the last up-sampling's biases land on every bin),
                              which the trained-like draw was scaled to avoid: the case that hid
                              a clamping float writer (issue 35). The published `inference`
                              section comes along (batch size, `normalize: false`).
`music16` (audio/music16.wav) is a 16-bit synthetic mix: a bass line, a chord pad, a kick, hi-hat
bursts and a vibrato lead.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile
import torch
import yaml
from ml_collections import ConfigDict

from msst.models.bs_roformer import BSRoformer, MelBandRoformer
from msst.models.scnet import SCNet
from msst.utils.audio_utils import denormalize_audio, normalize_audio
from msst.utils.model_utils import demix

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import music  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "Fixtures" / "msst"
AUDIO = ROOT / "Tests" / "Fixtures" / "audio"

BS_BANDS = [2] * 24 + [4] * 12 + [12] * 8 + [24] * 8 + [48] * 8 + [128, 129]


def yaml_text(model: dict, *, chunk: int, overlap: int, batch: int, instruments, target, model_type=None,
              normalize=None) -> str:
    """The config as the published files write it (tuples tagged `!!python/tuple`)."""
    lines = ["audio:", f"  chunk_size: {chunk}", "  dim_f: 1024", "  dim_t: 801", "  hop_length: 441",
             "  n_fft: 2048", "  num_channels: 2", "  sample_rate: 44100", "  min_mean_abs: 0.000", "", "model:"]
    for k, v in model.items():
        if isinstance(v, list):
            lines.append(f"  {k}:")
            lines += [f"    - {x}" for x in v]
        elif isinstance(v, tuple):
            lines.append(f"  {k}: !!python/tuple")
            lines += [f"    - {x}" for x in v]
        elif isinstance(v, bool):
            lines.append(f"  {k}: {'true' if v else 'false'}")
        else:
            lines.append(f"  {k}: {v}")
    lines += ["", "training:", "  batch_size: 2", "  instruments:"] + [f"  - {i}" for i in instruments]
    if target:
        lines.append(f"  target_instrument: {target}")
    if model_type:
        lines.append(f"  model_type: {model_type}")
    lines += ["  use_amp: true", "", "inference:", f"  batch_size: {batch}", "  dim_t: 801", f"  num_overlap: {overlap}"]
    if normalize is not None:
        lines.append(f"  normalize: {'true' if normalize else 'false'}")
    return "\n".join(lines + [""])


def load_config(text: str) -> ConfigDict:
    return ConfigDict(yaml.load(text, Loader=yaml.FullLoader))


def trained_like(model: torch.nn.Module, seed: int):
    """Weights the way a trained RoFormer's look: gains and biases away from init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("rotary_embed.freqs"):
                continue
            if name.endswith("gamma"):
                p.copy_(1 + 0.5 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / fan_in) ** 0.5)


def default_init(model: torch.nn.Module, seed: int):
    """PyTorch's initialisation as the constructor left it (seed it before building), with the
    norms activated: a gain of 1 and bias of 0 would hide a norm applied to the wrong axis."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)) and module.weight is not None:
                module.weight.copy_(1 + 0.3 * torch.randn(module.weight.shape, generator=g))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=g))
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))


def scnet_trained_like(model: torch.nn.Module, seed: int):
    """SCNet's weights as training leaves them: norm gains 1 ± 0.5 and biases away from 0,
    convolutions (plain and transposed) at unit gain so no branch is drowned by another."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.copy_(1 + 0.5 * torch.randn(module.weight.shape, generator=g))
                module.bias.copy_(0.2 * torch.randn(module.bias.shape, generator=g))
            elif isinstance(module, torch.nn.ConvTranspose2d):
                cin, _, k, _ = module.weight.shape
                gain = (module.stride[0] / (cin * k)) ** 0.5
                module.weight.copy_(gain * torch.randn(module.weight.shape, generator=g))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=g))
            elif isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) / fan_in ** 0.5)
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=g))
        # The last up-sampling makes the stems' spectra: scaled so the stems come out at the
        # mix's level, as a trained network's do (and the written files need no clipping).
        with torch.no_grad():
            for convtr in model.decoder[-1][1].convtrs:
                convtr.weight.mul_(0.1)
                convtr.bias.mul_(0.1)


SMALL = {
    # BS-RoFormer, one vocals head (viperx 1297 layout), fades decided per batch of 4.
    "bs_small": dict(
        family=BSRoformer, chunk=22050, overlap=2, batch=4, instruments=["vocals", "other"], target="vocals",
        nested=False,
        model=dict(dim=32, depth=2, stereo=True, num_stems=1, time_transformer_depth=1, freq_transformer_depth=1,
                   linear_transformer_depth=0, freqs_per_bands=tuple(BS_BANDS), dim_head=16, heads=2,
                   attn_dropout=0.1, ff_dropout=0.1, flash_attn=True, dim_freqs_in=1025, stft_n_fft=2048,
                   stft_hop_length=441, stft_win_length=2048, stft_normalized=False, mask_estimator_depth=2,
                   mlp_expansion_factor=1, multi_stft_resolution_loss_weight=1.0,
                   multi_stft_resolutions_window_sizes=(4096, 2048, 1024, 512, 256), multi_stft_hop_size=147,
                   multi_stft_normalized=False)),
    # BS-RoFormer with four heads and the skip connections of later configs; no target.
    "bs4_small": dict(
        family=BSRoformer, chunk=22050, overlap=2, batch=1, instruments=["drums", "bass", "other", "vocals"],
        target=None, nested=True, model_type="bs_roformer",
        model=dict(dim=16, depth=3, stereo=True, num_stems=4, time_transformer_depth=1, freq_transformer_depth=1,
                   freqs_per_bands=tuple(BS_BANDS), dim_head=16, heads=2, stft_n_fft=2048, stft_hop_length=441,
                   stft_win_length=2048, mask_estimator_depth=2, mlp_expansion_factor=1, skip_connection=True)),
    # Mel-Band RoFormer (KJ layout: 60 mel bands), four chunks over each sample, batches of 2.
    "mel_small": dict(
        family=MelBandRoformer, chunk=22050, overlap=4, batch=2, instruments=["vocals", "other"], target="vocals",
        nested=True,
        model=dict(dim=32, depth=2, stereo=True, num_stems=1, time_transformer_depth=1, freq_transformer_depth=1,
                   num_bands=60, dim_head=16, heads=2, attn_dropout=0, ff_dropout=0, flash_attn=True,
                   dim_freqs_in=1025, sample_rate=44100, stft_n_fft=2048, stft_hop_length=441, stft_win_length=2048,
                   stft_normalized=False, mask_estimator_depth=2, mlp_expansion_factor=1,
                   multi_stft_resolution_loss_weight=1.0,
                   multi_stft_resolutions_window_sizes=(4096, 2048, 1024, 512, 256), multi_stft_hop_size=147,
                   multi_stft_normalized=False)),
}

SCNET_SMALL = dict(
    family=SCNet, chunk=22050, overlap=4, batch=4, instruments=["drums", "bass", "other", "vocals"], target=None,
    nested=False, model_type="scnet",
    model=dict(sources=["drums", "bass", "other", "vocals"], audio_channels=2, dims=[4, 8, 12, 16], nfft=4096,
               hop_size=1024, win_size=4096, normalized=True, band_SR=[0.175, 0.392, 0.433], band_stride=[1, 4, 16],
               band_kernel=[3, 4, 16], conv_depths=[3, 2, 1], compress=4, conv_kernel=3, num_dplayer=6, expand=1))
SMALL["scnet_small"] = SCNET_SMALL
# A vocals SCNet (the large config's band split) with a target instrument.
SMALL["scnet_vocals_small"] = dict(SCNET_SMALL, overlap=2, batch=1, instruments=["vocals", "other"], target="vocals",
                                   model_type=None,
                                   model=dict(SCNET_SMALL["model"], sources=["vocals", "other"], band_SR=[0.225, 0.372, 0.403],
                                              dims=[4, 8, 16, 24], expand=2))

# Default-initialised networks in the published layouts, with the published inference sections.
SCNET_LARGE = dict(sources=["drums", "bass", "other", "vocals"], audio_channels=2, dims=[4, 8, 16, 32], nfft=4096,
                   hop_size=1024, win_size=4096, normalized=True, band_SR=[0.225, 0.372, 0.403], band_stride=[1, 4, 16],
                   band_kernel=[3, 4, 16], conv_depths=[3, 2, 1], compress=4, conv_kernel=3, num_dplayer=6, expand=1)
DEFAULT = {
    # config_musdb18_scnet_large.yaml's layout (inference batch 8, normalize false).
    "scnet_large_default": dict(family=SCNet, chunk=22050, overlap=4, batch=8, instruments=SCNET_LARGE["sources"],
                                target=None, nested=False, model_type="scnet", normalize=False, model=SCNET_LARGE),
    # SCNet XL IHF's layout: eight dual-path layers, stride and kernel 4 in the high band.
    "scnet_xl_ihf_default": dict(family=SCNet, chunk=22050, overlap=4, batch=4, instruments=SCNET_LARGE["sources"],
                                 target=None, nested=True, model_type="scnet", normalize=False,
                                 model=dict(SCNET_LARGE, band_SR=[0.23, 0.37, 0.4], band_stride=[1, 4, 4],
                                            band_kernel=[3, 4, 4], conv_depths=[3, 3, 3], num_dplayer=8)),
    # config_vocals_scnet.yaml's layout: the small band split, two sources, no target.
    "scnet_vocals_default": dict(family=SCNet, chunk=22050, overlap=4, batch=8, instruments=["vocals", "other"],
                                 target=None, nested=False, model_type="scnet", normalize=False,
                                 model=dict(SCNET_LARGE, sources=["vocals", "other"], band_SR=[0.175, 0.392, 0.433],
                                            dims=[4, 8, 12, 16])),
    # BS-RoFormer viperx 1297 and Mel-Band RoFormer KJ layouts.
    "bs_default": dict(SMALL["bs_small"], batch=4),
    "mel_default": dict(SMALL["mel_small"], overlap=2, batch=4),
    # `inference.normalize: true`: the track divided by its mono mix's mean and std around demix.
    "scnet_norm_default": dict(family=SCNet, chunk=22050, overlap=2, batch=1, instruments=["vocals", "other"],
                               target=None, nested=False, model_type="scnet", normalize=True,
                               model=dict(SCNET_LARGE, sources=["vocals", "other"], dims=[4, 8, 12, 16])),
}

SIGNALS = {
    "scnet_small": ["short", "long", "gaps", "mono44k"],
    "scnet_vocals_small": ["long"],
    "bs_small": ["short", "long", "gaps", "mono44k"],
    "bs4_small": ["long"],
    "mel_small": ["short", "long", "gaps", "mono44k"],
    "scnet_large_default": ["short", "long", "mono44k", "music16"],
    "scnet_xl_ihf_default": ["music16"],
    "scnet_vocals_default": ["music16"],
    "scnet_norm_default": ["music16", "mono44k"],
    "bs_default": ["long", "music16", "mono44k"],
    "mel_default": ["long", "music16"],
}


def read_signal(name: str) -> np.ndarray:
    audio, rate = soundfile.read(AUDIO / f"{name}.wav", dtype="float32", always_2d=True)
    assert rate == 44100, f"{name}: {rate} Hz"
    return audio.T.copy()


def save_checkpoint(model: torch.nn.Module, path: Path, nested: bool):
    state = model.state_dict()
    if nested:
        # A training-loop checkpoint of a DataParallel model.
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}
    torch.save(state, path)


def separate(config: ConfigDict, model: torch.nn.Module, mix: np.ndarray, model_type: str) -> np.ndarray:
    """`demix`, inside `inference.normalize`'s wrapping as msst's inference applies it."""
    normalize = bool(config.inference.get("normalize", False))
    if normalize:
        mix, params = normalize_audio(mix)
    out = demix(config, model, mix, torch.device("cpu"), model_type)
    names = [config.training.target_instrument] if config.training.get("target_instrument") else config.training.instruments
    stems = np.stack([out[n] for n in names])
    if normalize:
        stems = denormalize_audio(stems, params)
    return stems.astype(np.float32)


def small(only=None):
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {"generator": "tools/make_msst_fixtures.py", "msst": "0.1.0", "torch": torch.__version__, "cases": []}
    if only:
        old = json.loads((OUT / "manifest.json").read_text())
        manifest["cases"] = [c for c in old["cases"] if c["model"] not in only]
    music_path = AUDIO / "music16.wav"
    if not music_path.exists():
        soundfile.write(str(music_path), music(1.5, seed=16).T, 44100, subtype="PCM_16")
    entries = [(name, spec, seed, 100 + seed, trained_like) for seed, (name, spec) in enumerate(SMALL.items())]
    entries += [(name, spec, 200 + seed, 300 + seed, default_init) for seed, (name, spec) in enumerate(DEFAULT.items())]
    for name, spec, seed, draw_seed, draw in entries:
        if only and name not in only:
            continue
        text = yaml_text(spec["model"], chunk=spec["chunk"], overlap=spec["overlap"], batch=spec["batch"],
                         instruments=spec["instruments"], target=spec["target"], model_type=spec.get("model_type"),
                         normalize=spec.get("normalize"))
        config = load_config(text)
        torch.manual_seed(seed)
        model = spec["family"](**dict(config.model)).eval()
        if draw is trained_like and spec["family"] is SCNet:
            draw = scnet_trained_like
        draw(model, draw_seed)
        (OUT / f"{name}.yaml").write_text(text)
        save_checkpoint(model, OUT / f"{name}.ckpt", spec["nested"])
        model_type = {BSRoformer: "bs_roformer", MelBandRoformer: "mel_band_roformer", SCNet: "scnet"}[spec["family"]]
        for signal in SIGNALS[name]:
            mix = read_signal(signal)
            out = separate(config, model, mix, model_type)
            np.save(OUT / f"{name}-{signal}.npy", out)
            peak = float(np.abs(out).max())
            manifest["cases"].append({"model": name, "signal": signal, "shape": list(out.shape), "peak": round(peak, 4)})
            print(name, signal, out.shape, peak)
    # The band layout of Mel-Band RoFormer, for several band counts and transform sizes.
    bands = []
    for num_bands, nfft, rate in [(60, 2048, 44100), (128, 2048, 44100), (40, 4096, 44100), (60, 2048, 48000)]:
        m = MelBandRoformer(dim=8, depth=1, num_bands=num_bands, stereo=False, stft_n_fft=nfft,
                            stft_win_length=nfft, sample_rate=rate, dim_freqs_in=nfft // 2 + 1)
        fpb = m.freqs_per_band.numpy()
        bands.append({"num_bands": num_bands, "nfft": nfft, "sample_rate": rate,
                      "bins": [np.nonzero(row)[0].tolist() for row in fpb]})
    (OUT / "mel_bands.json").write_text(json.dumps(bands))
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", help="comma-separated entries to (re)write; the rest of the folder is kept")
    args = p.parse_args()
    small(set(args.only.split(",")) if args.only else None)


if __name__ == "__main__":
    sys.exit(main())
