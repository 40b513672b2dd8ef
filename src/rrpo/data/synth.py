"""The built-in synthetic emotional corpus (to be written, issue 2)."""
from dataclasses import dataclass


@dataclass
class SynthConfig:
    pass


def synthesize(cfg, out):
    raise NotImplementedError
