"""How much context the RVC synthesizer needs around a block: runs the v2-48k RVC-contract fixture
(tests/fixtures/make_synth.py, random weights, deterministic decoder) on short windows
[block start - L, block end + R) and compares the block's output with a long-window reference
(2.5 s left context + the 25-frame block + 30 frames right), with the same features, pitch and
prior noise (`rnd`) at the same frame positions.

Usage: python synth_window.py [--model PATH] [--positions N] [--unvoiced-positions N] [--threads N]
                              [--no-verify]
  --model      default $HOME/.cache/rvc-stage/bench/synth-v2-48k-rvc-768.onnx, generated with
               make_synth.py (--arch v2-48k --contract rvc --seed 0) when missing
  --positions  block positions averaged (default 6, the most that fit: every 37 frames of 5 s of
               inputs, each with 2.5 s before it)
  --unvoiced-positions  how many of them also run with pitchf = 0 (default 2)
Prints markdown tables: for L in {0, 6, 12, 24, 36, 50, 100, 250} (rows) and R in {0, 3, 6, 10,
15} (columns), the SNR in dB of the block's magnitude spectrogram (n_fft 2048, hop 480) and of
its samples, mean over positions, voiced (pitchf a 150-250 Hz glide with unvoiced gaps) and with
pitchf = 0 everywhere (coarse pitch unchanged: the same latent, no sine source), and the SNR of the
latent z (the decoder's input) over the block.

How it stays cheap (the decoder is ~97 % of the work): the model is cut where the decoder starts
(`/dec/conv_pre/Conv`'s input z * mask, `/dec/cond/Conv`'s input g); the front (text encoder,
prior, flow) runs on the whole window, the decoder only on the window's frames within 10 of the
block (its receptive field is [-9.4, +9.4] frames at 48k), and an input `phase0` added to the sine
source's cumulative phase stands in for the frames cut off before it, so the block's samples are
those of the whole model run on the window (checked against full-model runs unless --no-verify).
The NSF phase restarts at every window's start, as the ONNX model does when fed the window.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from scipy.signal import butter, sosfiltfilt

LEFTS = [0, 6, 12, 24, 36, 50, 100, 250]
RIGHTS = [0, 3, 6, 10, 15]
BLOCK, REF_LEFT, REF_RIGHT, MARGIN, SPACING, FRAMES = 25, 250, 30, 10, 37, 500
SR, UPP, DIM, INTER, N_FFT, HOP = 48000, 480, 768, 192, 2048, 480

parser = argparse.ArgumentParser()
parser.add_argument("--model", default=os.path.expanduser("~/.cache/rvc-stage/bench/synth-v2-48k-rvc-768.onnx"))
parser.add_argument("--positions", type=int, default=6)
parser.add_argument("--unvoiced-positions", type=int, default=2)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--no-verify", action="store_true")
args = parser.parse_args()
began = time.perf_counter()

if not os.path.exists(args.model):
    os.makedirs(os.path.dirname(args.model), exist_ok=True)
    maker = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "make_synth.py")
    subprocess.run([sys.executable, maker, args.model, "--arch", "v2-48k", "--contract", "rvc", "--seed", "0", "--no-check"], check=True)
model = onnx.load(args.model)


def subgraph(inputs, outputs):
    """The nodes `outputs` need, cut at `inputs` ({name: element type})."""
    producer = {o: n for n in model.graph.node for o in n.output}
    initializers = {t.name: t for t in model.graph.initializer}
    need, seen, nodes, used = list(outputs), set(), {}, set()
    while need:
        name = need.pop()
        if name in seen or name in inputs or not name:
            continue
        seen.add(name)
        if name in initializers:
            used.add(name)
            continue
        node = producer[name]
        if node.name not in nodes:
            nodes[node.name] = node
            need.extend(node.input)
    order = {n.name: i for i, n in enumerate(model.graph.node)}
    graph = helper.make_graph(
        sorted(nodes.values(), key=lambda n: order[n.name]),
        "part",
        [helper.make_tensor_value_info(k, v, None) for k, v in inputs.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [initializers[k] for k in sorted(used)],
    )
    part = helper.make_model(graph, opset_imports=model.opset_import)
    part.ir_version = model.ir_version
    return part


def session(proto):
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


by_name = {n.name: n for n in model.graph.node}
Z, G = by_name["/dec/conv_pre/Conv"].input[0], by_name["/dec/cond/Conv"].input[0]
front = session(subgraph({"phone": 1, "phone_lengths": 7, "pitch": 7, "ds": 7, "rnd": 1}, [Z, G]))
decoder_proto = subgraph({Z: 1, "pitchf": 1, G: 1}, ["audio"])
cumsum = next(n for n in decoder_proto.graph.node if n.name.startswith("/dec/m_source/") and n.op_type == "CumSum")
raw = cumsum.output[0] + "_raw"
phase_at = cumsum.output[0]
cumsum.output[0] = raw
decoder_proto.graph.node.insert(list(decoder_proto.graph.node).index(cumsum) + 1, helper.make_node("Add", [raw, "phase0"], [phase_at]))
decoder_proto.graph.input.append(helper.make_tensor_value_info("phase0", TensorProto.FLOAT, [1]))
decoder = session(decoder_proto)
full = None if args.no_verify else session(model)

# Inputs: smooth random features, a gliding pitch with unvoiced gaps, one fixed prior noise.
positions = [REF_LEFT + SPACING * k for k in range(args.positions)]
frames = FRAMES
if positions[-1] + BLOCK + REF_RIGHT > frames:
    parser.error(f"at most {(frames - REF_LEFT - BLOCK - REF_RIGHT) // SPACING + 1} positions fit in {frames} frames")
rng = np.random.default_rng(2027)
feats = sosfiltfilt(butter(4, 8, fs=100, output="sos"), rng.standard_normal((frames + 200, DIM)), axis=0)[100:-100]
feats = (feats - feats.mean(0)) / feats.std(0) + 0.1 * rng.standard_normal((frames, DIM))
feats = feats.astype("float32")
t = np.arange(frames) / 100
f0 = 150 * (250 / 150) ** (t / t[-1]) * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
for start in rng.choice(frames - 20, size=frames // 40, replace=False):
    f0[start : start + rng.integers(4, 16)] = 0
f0 = f0.astype("float32")
mel = 1127 * np.log(1 + f0 / 700)  # get_f0_post (infer/lib/rtrvc.py)
mel_min, mel_max = 1127 * np.log(1 + 50 / 700), 1127 * np.log(1 + 1100 / 700)
mel = np.where(mel > 0, (mel - mel_min) * 254 / (mel_max - mel_min) + 1, mel)
coarse = np.rint(np.clip(mel, 1, 255)).astype("int64")
rnd = (rng.standard_normal((1, INTER, frames)) * 0.66666).astype("float32")
rad_upp = np.mod(f0.astype("float64") / SR, 1.0) * UPP  # phase advance per frame, in cycles


def latent(start, end):
    out = front.run([Z, G], {"phone": feats[None, start:end], "phone_lengths": np.array([end - start], "int64"),
                             "pitch": coarse[None, start:end], "ds": np.array([0], "int64"), "rnd": rnd[:, :, start:end]})
    return out[0], out[1]


def block_audio(window, block, variants=(True,)):
    """The block's latent and samples (voiced: True, pitchf = 0: False) from the model run on frames
    [window), the decoder cut to the block +- MARGIN."""
    (ws, we), (bs, be) = window, block
    z, g = latent(ws, we)
    cs, ce = max(ws, bs - MARGIN), min(we, be + MARGIN)
    audio = {}
    for voiced in variants:
        pitchf = f0[None, cs:ce] if voiced else np.zeros((1, ce - cs), "float32")
        phase0 = np.array([np.mod(rad_upp[ws:cs].sum(), 1.0) if voiced else 0.0], "float32")
        out = decoder.run(["audio"], {Z: z[:, :, cs - ws : ce - ws], "pitchf": pitchf, G: g, "phase0": phase0})[0].ravel()
        audio[voiced] = out[(bs - cs) * UPP : (be - cs) * UPP]
    return z[0, :, bs - ws : be - ws], audio


def spectrum(x):
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    x = np.pad(x, N_FFT // 2, mode="reflect")
    count = 1 + (len(x) - N_FFT) // HOP
    return np.abs(np.fft.rfft(np.stack([x[i * HOP : i * HOP + N_FFT] * window for i in range(count)]), axis=1))


def snr(reference, test):
    return 10 * np.log10(np.sum(reference.astype("float64") ** 2) / max(np.sum((reference.astype("float64") - test) ** 2), 1e-30))


if full is not None:  # the cut decoder gives the whole model's samples
    bs = positions[0]
    for ws, we in [(bs - 50, bs + BLOCK + 15), (bs - REF_LEFT, bs + BLOCK + REF_RIGHT)]:
        feed = {"phone": feats[None, ws:we], "phone_lengths": np.array([we - ws], "int64"), "pitch": coarse[None, ws:we],
                "pitchf": f0[None, ws:we], "ds": np.array([0], "int64"), "rnd": rnd[:, :, ws:we]}
        whole = full.run(["audio"], feed)[0].ravel()[(bs - ws) * UPP : (bs - ws + BLOCK) * UPP]
        cut = block_audio((ws, we), (bs, bs + BLOCK))[1][True]
        print(f"verify window [{ws - bs}, +{we - bs - BLOCK}): whole model vs cut decoder max |diff| "
              f"{np.abs(whole - cut).max():.2e} (block RMS {np.sqrt(np.mean(whole ** 2)):.3f}), SNR {snr(whole, cut):.1f} dB")
    full = None

results = {}  # (variant, L, R) -> list of (spectral SNR, time SNR, latent SNR)
for index, bs in enumerate(positions):
    be = bs + BLOCK
    variants = (True, False) if index < args.unvoiced_positions else (True,)
    ref_z, ref_audio = block_audio((bs - REF_LEFT, be + REF_RIGHT), (bs, be), variants)
    ref_spectrum = {voiced: spectrum(audio) for voiced, audio in ref_audio.items()}
    for left in LEFTS:
        for right in RIGHTS:
            z, audio = block_audio((bs - left, be + right), (bs, be), variants)
            for voiced in variants:
                results.setdefault((voiced, left, right), []).append(
                    (snr(ref_spectrum[voiced], spectrum(audio[voiced])), snr(ref_audio[voiced], audio[voiced]), snr(ref_z, z)))
    print(f"block at frame {bs}: done ({time.perf_counter() - began:.0f} s)", file=sys.stderr)


def table(title, voiced, column):
    print(f"\n{title}\n")
    print("| L \\ R | " + " | ".join(str(r) for r in RIGHTS) + " |")
    print("|---:|" + "---:|" * len(RIGHTS))
    for left in LEFTS:
        cells = []
        for right in RIGHTS:
            values = np.array(results[(voiced, left, right)])
            cells.append(" / ".join(f"{values[:, c].mean():.1f}" for c in column))
        print(f"| {left} | " + " | ".join(cells) + " |")


voiced_frames = int(np.mean([np.count_nonzero(f0[bs : bs + BLOCK]) for bs in positions]) + 0.5)
print(f"\nv2-48k RVC-contract fixture, block {BLOCK} frames, reference [-{REF_LEFT}, +{REF_RIGHT}) frames, "
      f"{len(positions)} positions (mean {voiced_frames} of {BLOCK} block frames voiced), SNR in dB, mean over positions")
table("Voiced (NSF phase restarts at the window start): spectrogram SNR / sample SNR", True, (0, 1))
table(f"pitchf = 0 everywhere (no sine source; first {min(args.unvoiced_positions, len(positions))} positions): "
      "spectrogram SNR / sample SNR", False, (0, 1))
table("Latent z (decoder input) over the block", True, (2,))
print(f"\n{time.perf_counter() - began:.0f} s")
