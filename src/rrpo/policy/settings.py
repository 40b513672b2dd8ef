"""Sampling settings of the policy (torch-free, so CLI parsers can name them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rrpo.config import check, option


@dataclass
class SamplingConfig:
    top_k: int = option(25, "keep at most this many ids per step (CosyVoice2: 25)")
    top_p: float = option(0.8, "nucleus mass (CosyVoice2: 0.8)")
    temperature: float = option(1.0, "divide logits by this before filtering")
    ras_window: int = option(10, "repetition-aware sampling window (CosyVoice2: 10; 0 = off)")
    ras_tau: float = option(0.1, "re-draw from the full distribution when the drawn id fills this share of the window")
    ras: Literal["release", "current"] = option(
        "current",
        "which upstream CosyVoice2 sampler: current (ace7c47: eos masked before the nucleus filter, the repeated id banned in the re-draw, stop on eos or either special row) or release (77d8cf13: eos re-drawn, the repeated id allowed in the re-draw, specials never drawn)",
    )
    min_ratio: float = option(2.0, "minimum speech tokens per text token")
    max_ratio: float = option(20.0, "maximum speech tokens per text token")
    use_cache: bool = option(True, "reuse attention keys/values across steps (KV cache)")
    guidance: float = option(
        1.0,
        "classifier-free guidance on the emotion instruction: logits = uncond + w (cond - uncond), uncond "
        "= the prompt without its instruction; 1 = plain conditional sampling (needs a policy trained "
        "with data.drop_emotion > 0, or CosyVoice2)",
    )

    def __post_init__(self):
        check(self.top_k >= 1, "sampling.top_k", "must be >= 1")
        check(0 < self.top_p <= 1, "sampling.top_p", "must be in (0, 1]")
        check(self.temperature > 0, "sampling.temperature", "must be > 0")
        check(self.ras_window >= 0, "sampling.ras_window", "must be >= 0")
        check(0 <= self.ras_tau <= 1, "sampling.ras_tau", "must be in [0, 1]")
        check(0 <= self.min_ratio <= self.max_ratio, "sampling.min_ratio", "must be in [0, max_ratio]")
        check(self.max_ratio > 0, "sampling.max_ratio", "must be > 0")
        check(self.guidance >= 0, "sampling.guidance", "must be >= 0 (1 = no guidance)")
