"""Data: manifests, emotion labels, audio input, corpus preparers and the synthetic corpus."""
