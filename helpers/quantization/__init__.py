"""Quantization: fake quantization (PTQ, QAT) and real int8 CPU inference."""
