"""librosa.pyin on the pitch benchmark's signals: the reference estimator RVC Stage's built-in one
is compared with. Usage: python pyin_reference.py DIR — reads DIR/<name>.npy ([1, N] float32 at
16 kHz), writes DIR/<name>.pyin.npy ([1, frames] float32 f0, 0 = unvoiced) with frames centred
every 160 samples over RVC's 50-1100 Hz, one per 10 ms, like ours."""
import pathlib
import sys

import librosa
import numpy as np

for path in sorted(pathlib.Path(sys.argv[1]).glob("*.npy")):
    if path.name.endswith(".pyin.npy"):
        continue
    audio = np.load(path)[0].astype("float64")
    f0, voiced, _ = librosa.pyin(audio, fmin=50, fmax=1100, sr=16000, frame_length=1024, hop_length=160, center=True)
    f0 = np.where(voiced, np.nan_to_num(f0), 0.0)
    np.save(path.with_suffix(".pyin.npy"), f0[None, :].astype("float32"))
