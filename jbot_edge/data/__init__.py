"""Jet data: the canonical HDF5 format, its reader, the Pythia 8 generator, converters and preprocessing."""
