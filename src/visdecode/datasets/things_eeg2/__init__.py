"""THINGS-EEG2 (Gifford et al. 2022): format, synthetic world, sources, preprocessing."""
