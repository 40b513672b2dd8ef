"""Build one HTML page a person opens in a browser, readable offline.

Inputs are plain data (:class:`ReportInput`): a comparison table, per-emotion audio examples per
system, training curves and the proxy-vs-judge points. Everything the page needs is written beside
it (WAV files, PNG spectrograms and plots) and referenced by relative paths, so the folder can be
copied or zipped as is. No script, no network.
"""

from __future__ import annotations

import html
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rrpo.io import atomic_open


@dataclass
class AudioExample:
    system: str  # e.g. "reference", "SFT", "DiffRO", "RRPO"
    emotion: str
    text: str
    wav: str  # path to a WAV file


@dataclass
class Curve:
    title: str
    xlabel: str
    ylabel: str
    series: dict[str, tuple[Sequence[float], Sequence[float]]]  # label -> (x, y)


@dataclass
class ReportInput:
    title: str
    table_columns: list[str]
    table_rows: list[dict]  # one per system; keys = table_columns
    examples: list[AudioExample] = field(default_factory=list)
    curves: list[Curve] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return html.escape(str(v))


def spectrogram_png(wav: str | Path, out: str | Path, title: str = "") -> None:
    """Log-mel spectrogram of a WAV as a small PNG."""
    import librosa
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rrpo.data.audio import load_audio

    audio, sr = load_audio(wav, allow_silence=True)
    mel = librosa.feature.melspectrogram(y=audio, sr=sr, n_fft=1024, hop_length=256, n_mels=80)
    db = librosa.power_to_db(mel + 1e-10, ref=np.max)
    fig, ax = plt.subplots(figsize=(3.2, 1.6), dpi=100)
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=0, extent=(0, len(audio) / sr, 0, 80))
    ax.set_xlabel("s", fontsize=7)
    ax.set_yticks([])
    ax.tick_params(labelsize=6)
    if title:
        ax.set_title(title, fontsize=7)
    fig.tight_layout(pad=0.2)
    fig.savefig(out)
    plt.close(fig)


def curve_png(curve: Curve, out: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    for label, (x, y) in curve.series.items():
        ax.plot(list(x), list(y), marker="o" if len(x) < 30 else None, ms=3, label=label)
    ax.set_title(curve.title)
    ax.set_xlabel(curve.xlabel)
    ax.set_ylabel(curve.ylabel)
    ax.grid(alpha=0.3)
    if curve.series:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.table-scroll{max-width:100%;overflow-x:auto;margin:1em 0}
.grid{display:grid;gap:10px;align-items:start}
.cell{border:1px solid #ddd;padding:6px;border-radius:4px;font-size:12px}
.cell img{width:100%;display:block}audio{width:100%}
.plots img{max-width:48%;margin:4px}h2{margin-top:1.5em}
"""


def build_report(data: ReportInput, out_dir: str | Path) -> Path:
    """Write ``out_dir/index.html`` with its assets; return the page's path."""
    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "img").mkdir(parents=True, exist_ok=True)
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(data.title)}</title>",
        f"<style>{CSS}</style></head><body><h1>{html.escape(data.title)}</h1>",
    ]
    for n in data.notes:
        parts.append(f"<p>{html.escape(n)}</p>")

    parts.append(
        "<h2>Systems</h2><div class='table-scroll'><table><tr>"
        + "".join(f"<th>{html.escape(c)}</th>" for c in data.table_columns)
        + "</tr>"
    )
    for row in data.table_rows:
        parts.append("<tr>" + "".join(f"<td>{_fmt(row.get(c, ''))}</td>" for c in data.table_columns) + "</tr>")
    parts.append("</table></div>")

    if data.examples:
        systems = list(dict.fromkeys(e.system for e in data.examples))
        emotions = list(dict.fromkeys(e.emotion for e in data.examples))
        parts.append("<h2>Listen</h2>")
        for emo in emotions:
            parts.append(
                f"<h3>{html.escape(emo)}</h3><div class='grid' style='grid-template-columns:repeat({len(systems)},1fr)'>"
            )
            for sysname in systems:
                ex = next((e for e in data.examples if e.system == sysname and e.emotion == emo), None)
                if ex is None:
                    parts.append(f"<div class='cell'><b>{html.escape(sysname)}</b><br>—</div>")
                    continue
                stem = f"{_slug(sysname)}_{_slug(emo)}"
                shutil.copyfile(ex.wav, out / "audio" / f"{stem}.wav")
                spectrogram_png(ex.wav, out / "img" / f"{stem}.png")
                parts.append(
                    f"<div class='cell'><b>{html.escape(sysname)}</b><br><i>{html.escape(ex.text)}</i>"
                    f"<audio controls preload='metadata' src='audio/{stem}.wav'></audio>"
                    f"<img alt='spectrogram {html.escape(sysname)} {html.escape(emo)}' src='img/{stem}.png'></div>"
                )
            parts.append("</div>")

    if data.curves:
        parts.append("<h2>Curves</h2><div class='plots'>")
        for i, c in enumerate(data.curves):
            name = f"curve_{i}_{_slug(c.title)}.png"
            curve_png(c, out / "img" / name)
            parts.append(f"<img alt='{html.escape(c.title)}' src='img/{name}'>")
        parts.append("</div>")
    parts.append("</body></html>")
    page = out / "index.html"
    with atomic_open(page) as f:
        f.write("\n".join(parts))
    return page


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in s.lower()).strip("-") or "x"
