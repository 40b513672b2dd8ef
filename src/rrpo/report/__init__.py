"""HTML report: one offline page comparing systems, with audio players, spectrograms and plots."""
