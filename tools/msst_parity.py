#!/usr/bin/env python3
"""Self-check for the RoFormer and SCNet families anyone can run: build a full-size network of a
published configuration with random weights, run the reference (`msst` 0.1.0 `demix`) and
`stemify separate` on the same input, print per-stem SNR and both wall times.

    tools/setup_reference.sh && swift build -c release
    .reference/bin/python tools/msst_parity.py --config bs_viperx --seconds 3
    .reference/bin/python tools/msst_parity.py --config mel_kj --seconds 12 --channels 1
    .reference/bin/python tools/msst_parity.py --config mel_kj --seconds 5 --samplerate 48000
    .reference/bin/python tools/msst_parity.py --config all --small --seconds 4
    # any MSST config file as it is published, PyTorch's default initialisation:
    .reference/bin/python tools/msst_parity.py --config-file config_musdb18_scnet_large.yaml --weights default --seconds 13

Weights (`--weights`):
  default  PyTorch's initialisation of every layer (seeded), then every norm's gain 1 + 0.3·N(0, 1)
           and bias 0.1·N(0, 1): stems that peak over full scale, as issue 35's case;
  trained  the fixtures' trained-like draw (RoFormers: gains 1 ± 0.5, linears at unit gain; SCNet:
           convolutions at unit gain, the last up-sampling scaled to the mix's level);
  unit     every convolution, linear and LSTM weight N(0, 1/fan_in), biases 0.1·N(0, 1), norms as
           in default, nothing rescaled.
Input (`--input-kind`): `music` a 16-bit synthetic mix (bass line, chord pad, kick, hi-hat bursts,
vibrato lead; tools/make_msst_fixtures.music), `tones` partials, clicks and noise in float.
`--config-file PATH` reads an MSST YAML as it is; the family comes from `--model-type`, else
`training.model_type`, else the model keys. The stems are compared as they are: a float32 file
keeps samples over full scale (the reference's writer does too).

Configurations (hyperparameters of the published checkpoints, see
../shared/notes/modern-models.md): bs_viperx (BS-RoFormer viperx 12.9755: dim 512, depth 12),
bs_4stem (BS-RoFormer 4 stems 384/8, skip connections off), mel_kj (Mel-Band RoFormer
KimberleyJensen: dim 384, depth 6, 60 bands), scnet_small (dims 4/32/64/128), scnet_large
(dims 4/64/128/256, the large band split), scnet_xl_ihf (eight dual-path layers, stride 4 in the
high band). `--small` keeps the layouts at width 32.
Input other than 44.1 kHz is resampled with julius (demucs.audio.convert_audio, the resampler
Stemify reproduces) before the reference runs, since `demix` does not resample.
Exits 1 when a stem is below --bar dB.
"""
import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402
import make_msst_fixtures as mm  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

COMMON = dict(stereo=True, time_transformer_depth=1, freq_transformer_depth=1, dim_head=64, heads=8,
              attn_dropout=0.1, ff_dropout=0.1, flash_attn=True, dim_freqs_in=1025, stft_n_fft=2048,
              stft_hop_length=441, stft_win_length=2048, stft_normalized=False, mask_estimator_depth=2)
CONFIGS = {
    "bs_viperx": (mm.BSRoformer, dict(COMMON, dim=512, depth=12, num_stems=1, linear_transformer_depth=0,
                                      freqs_per_bands=tuple(mm.BS_BANDS)),
                  dict(chunk=352800, overlap=2, batch=4, instruments=["vocals", "other"], target="vocals")),
    "bs_4stem": (mm.BSRoformer, dict(COMMON, dim=384, depth=8, num_stems=4, freqs_per_bands=tuple(mm.BS_BANDS),
                                     mlp_expansion_factor=2),
                 dict(chunk=485100, overlap=2, batch=2, instruments=["drums", "bass", "other", "vocals"], target=None)),
    "scnet_small": (mm.SCNet, dict(sources=["drums", "bass", "other", "vocals"], audio_channels=2, dims=[4, 32, 64, 128],
                                   nfft=4096, hop_size=1024, win_size=4096, normalized=True,
                                   band_SR=[0.175, 0.392, 0.433], band_stride=[1, 4, 16], band_kernel=[3, 4, 16],
                                   conv_depths=[3, 2, 1], compress=4, conv_kernel=3, num_dplayer=6, expand=1),
                    dict(chunk=485100, overlap=4, batch=4, instruments=["drums", "bass", "other", "vocals"], target=None)),
    "scnet_large": (mm.SCNet, dict(sources=["drums", "bass", "other", "vocals"], audio_channels=2, dims=[4, 64, 128, 256],
                                   nfft=4096, hop_size=1024, win_size=4096, normalized=True,
                                   band_SR=[0.225, 0.372, 0.403], band_stride=[1, 4, 16], band_kernel=[3, 4, 16],
                                   conv_depths=[3, 2, 1], compress=4, conv_kernel=3, num_dplayer=6, expand=1),
                    dict(chunk=485100, overlap=4, batch=8, instruments=["drums", "bass", "other", "vocals"], target=None)),
    # The release's YAML (v1.0.15 config_musdb18_scnet_xl_more_wide_v5.yaml) is an asset, not in
    # the repository; these are the hyperparameters ports of that checkpoint build it with:
    # the large layout's widths, eight dual-path layers, stride and kernel 4 in the high band,
    # three convolution layers in every band.
    "scnet_xl_ihf": (mm.SCNet, dict(sources=["drums", "bass", "other", "vocals"], audio_channels=2, dims=[4, 64, 128, 256],
                                    nfft=4096, hop_size=1024, win_size=4096, normalized=True,
                                    band_SR=[0.23, 0.37, 0.4], band_stride=[1, 4, 4], band_kernel=[3, 4, 4],
                                    conv_depths=[3, 3, 3], compress=4, conv_kernel=3, num_dplayer=8, expand=1),
                     dict(chunk=485100, overlap=4, batch=4, instruments=["drums", "bass", "other", "vocals"], target=None)),
    "mel_kj": (mm.MelBandRoformer, dict(COMMON, dim=384, depth=6, num_stems=1, num_bands=60, sample_rate=44100,
                                        attn_dropout=0, ff_dropout=0),
               dict(chunk=352800, overlap=2, batch=4, instruments=["vocals", "other"], target="vocals")),
    "mel_viperx": (mm.MelBandRoformer, dict(COMMON, dim=384, depth=12, num_stems=1, num_bands=60, sample_rate=44100),
                   dict(chunk=352800, overlap=2, batch=4, instruments=["vocals", "other"], target="vocals")),
}


FAMILIES = {mm.BSRoformer: "bs_roformer", mm.MelBandRoformer: "mel_band_roformer", mm.SCNet: "scnet"}


def unit_gain(model: torch.nn.Module, seed: int):
    """Every weight matrix N(0, 1/fan_in), biases 0.1·N(0, 1), norms activated as default_init's."""
    mm.default_init(model, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel() if not isinstance(module, torch.nn.ConvTranspose2d) \
                    else module.weight.shape[0] * module.weight.shape[2] // module.stride[0]
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) / fan_in ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=g))
            elif isinstance(module, torch.nn.LSTM):
                for name, p in module.named_parameters():
                    p.copy_(torch.randn(p.shape, generator=g) / module.hidden_size ** 0.5 if "weight" in name
                            else 0.1 * torch.randn(p.shape, generator=g))


def draw(model, klass, weights, seed):
    if weights == "default":
        mm.default_init(model, seed)
    elif weights == "unit":
        unit_gain(model, seed)
    else:
        (mm.scnet_trained_like if klass is mm.SCNet else mm.trained_like)(model, seed)


def write_model(name, repo, seed, small=False, weights="trained"):
    """A random network of configuration `name` as `repo/NAME.ckpt` + `NAME.yaml`.
    Returns (name, config, model, stems, model_type)."""
    klass, model_kw, spec = CONFIGS[name]
    if small and klass is mm.SCNet:
        model_kw = dict(model_kw, dims=[4, 8, 12, 16])
    elif small:
        model_kw = dict(model_kw, dim=32, depth=2, heads=2, dim_head=16, mlp_expansion_factor=1)
    text = mm.yaml_text(model_kw, chunk=spec["chunk"], overlap=spec["overlap"], batch=spec["batch"],
                        instruments=spec["instruments"], target=spec["target"])
    config = mm.load_config(text)
    torch.manual_seed(seed)
    model = klass(**dict(config.model)).eval()
    draw(model, klass, weights, seed + 100)
    (repo / f"{name}.yaml").write_text(text)
    mm.save_checkpoint(model, repo / f"{name}.ckpt", nested=False)
    return name, config, model, [spec["target"]] if spec["target"] else spec["instruments"], FAMILIES[klass]


def infer_model_type(config) -> str:
    keys = set(config.model.keys())
    if "band_SR" in keys or "conv_depths" in keys:
        return "scnet"
    if "num_bands" in keys:
        return "mel_band_roformer"
    if "freqs_per_bands" in keys:
        return "bs_roformer"
    sys.exit("cannot tell the model family from the config's model keys: pass --model-type")


def write_model_from_file(path, repo, seed, model_type=None, weights="default"):
    """The network of an MSST YAML as published (`model_type` added to `training` if absent, as
    stemify needs it there), saved as `repo/NAME.ckpt` + `NAME.yaml`. Returns (name, config, model,
    stems, model_type)."""
    from msst.utils.settings import get_model_from_config
    path = Path(path)
    text = path.read_text()
    config = mm.load_config(text)
    model_type = model_type or config.training.get("model_type") or infer_model_type(config)
    torch.manual_seed(seed)
    model, config = get_model_from_config(model_type, str(path))
    model.eval()
    draw(model, type(model), weights, seed + 100)
    if "model_type" not in config.training:
        # The first `training:` line of the file, as written: the rest of the file stays byte for byte.
        text = text.replace("\ntraining:\n", f"\ntraining:\n  model_type: {model_type}\n", 1)
    name = path.stem.replace(".", "_")
    (repo / f"{name}.yaml").write_text(text)
    mm.save_checkpoint(model, repo / f"{name}.ckpt", nested=False)
    target = config.training.get("target_instrument")
    return name, config, model, [target] if target else list(config.training.instruments), model_type


def snr(ref, est):
    return 10 * math.log10(float((ref ** 2).sum()) / max(float(((ref - est) ** 2).sum()), 1e-30))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="all", help="a configuration above, a comma list, or all")
    p.add_argument("--config-file", action="append", default=[],
                   help="an MSST YAML as published (repeatable); replaces --config")
    p.add_argument("--model-type", help="the family of --config-file (bs_roformer, mel_band_roformer, scnet)")
    p.add_argument("--weights", choices=["default", "trained", "unit"], default="trained")
    p.add_argument("--input-kind", choices=["music", "tones"], default="music")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--samplerate", type=int, default=44100)
    p.add_argument("--small", action="store_true", help="width 32 (fast) instead of full size")
    p.add_argument("--bar", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--binary", default=str(ROOT / ".build" / "release" / "stemify"))
    p.add_argument("--keep", help="write the model folder and input here and keep them (for benchmarks and profiling)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    names = [] if args.config_file else list(CONFIGS) if args.config == "all" else args.config.split(",")
    worst = math.inf
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep:
            tmp = args.keep
        repo, out = Path(tmp) / "repo", Path(tmp) / "out"
        repo.mkdir(parents=True, exist_ok=True)
        wav_path = Path(tmp) / "input.wav"
        if args.input_kind == "music":
            x = mf.music(args.seconds, channels=args.channels, samplerate=args.samplerate, seed=args.seed)
            sf.write(str(wav_path), x.T, args.samplerate, subtype="PCM_16")
        else:
            x = mf.signal(args.seconds, channels=args.channels, samplerate=args.samplerate, seed=args.seed)
            sf.write(str(wav_path), x.T, args.samplerate, subtype="FLOAT")
        mix = torch.from_numpy(x)
        if args.samplerate != 44100:
            from demucs.audio import convert_audio
            mix = convert_audio(mix, args.samplerate, 44100, args.channels)
        builds = [lambda seed, n=n: write_model(n, repo, seed, args.small, args.weights) for n in names]
        builds += [lambda seed, f=f: write_model_from_file(f, repo, seed, args.model_type, args.weights)
                   for f in args.config_file]
        for i, build in enumerate(builds):
            name, config, model, stems, model_type = build(args.seed + i)
            start = time.perf_counter()
            ref = mm.separate(config, model, mix.numpy(), model_type)
            ref_seconds = time.perf_counter() - start
            del model
            cmd = [args.binary, "separate", "-n", name, "--repo", str(repo), "-o", str(out), "--float32",
                   "--clip-mode", "none", "--quiet", "-j", str(args.threads), str(wav_path)]
            start = time.perf_counter()
            subprocess.run(cmd, check=True)
            ours_seconds = time.perf_counter() - start
            line = []
            for k, stem in enumerate(stems):
                est, _ = sf.read(out / name / wav_path.stem / f"{stem}.wav", dtype="float32", always_2d=True)
                db = snr(ref[k], est.T)
                worst = min(worst, db)
                line.append(f"{stem} {db:6.1f} dB")
            print(f"{name:10s} {'  '.join(line)}   reference {ref_seconds:6.1f} s, stemify {ours_seconds:6.1f} s "
                  f"(whole process, {args.seconds:g} s of {args.input_kind}, {args.channels} ch, {args.samplerate} Hz, "
                  f"{args.weights} weights, peak {float(np.abs(ref).max()):.2f})", flush=True)
    print(f"worst {worst:.1f} dB (bar {args.bar:g})")
    return 0 if worst >= args.bar else 1


if __name__ == "__main__":
    sys.exit(main())
