"""Firmware: Brevitas -> QONNX -> hls4ml projects, vendor synthesis reports, the budget verdict and emulation."""
