"""rrpo: robust reward policy optimisation (RRPO) and DiffRO for LLM-based emotional TTS."""

__version__ = "0.1.0"
