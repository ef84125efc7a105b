"""THINGS-MEG (Hebart et al. 2023, OpenNeuro ds004212): format, synthetic world, preparation."""
