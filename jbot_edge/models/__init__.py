"""Neural networks: the jBOT transformer (``transformer``) and the quantized trigger students (``students``)."""
