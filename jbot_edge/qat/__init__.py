"""Quantization-aware distillation: a compact Brevitas student regresses the teacher's saved anomaly score."""
