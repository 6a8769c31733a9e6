#!/usr/bin/env python3
"""Per-stem SNR of `stemify separate` output against a reference `.npy` (by hand, not in CI).

    .reference/bin/python tools/make_fixtures.py --full /tmp/full
    .build/release/stemify separate -n htdemucs --repo /tmp/full -o /tmp/out --shifts 0 --float32 --clip-mode none /tmp/full/parity.wav
    .reference/bin/python tools/compare_stems.py /tmp/full/parity__htdemucs.npy /tmp/out/htdemucs/parity

The stems are compared as they are: stemify's float WAV keeps samples over full scale.
SNR = reference energy over error energy, in dB.
"""
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

SOURCES = {4: ["drums", "bass", "other", "vocals"], 6: ["drums", "bass", "other", "vocals", "guitar", "piano"]}


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    ref = np.load(sys.argv[1])
    folder = Path(sys.argv[2])
    for k, name in enumerate(SOURCES[ref.shape[0]]):
        est, _ = sf.read(folder / f"{name}.wav", dtype="float32", always_2d=True)
        r = ref[k]
        snr = 10 * np.log10((r ** 2).sum() / max(((r - est.T) ** 2).sum(), 1e-30))
        print(f"{name:8s} SNR {snr:6.1f} dB")


if __name__ == "__main__":
    main()
