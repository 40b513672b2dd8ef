"""Phonemes and phone recognition: what the tokens must keep of the words, and how the audit hears them.

- :mod:`rrpo.phones.inventory`: a text's phonemes (espeak-ng), phone sets, edit distance and PER;
- :mod:`rrpo.phones.model`: a small CTC phone recogniser over log-mels at 25 Hz;
- :mod:`rrpo.phones.train`: ``rrpo phones train``.
"""
