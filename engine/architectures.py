"""Names of the encoder architectures this build knows, without importing them.

Why apart from `engine/encoders` (whose registry maps these names to torch modules): reading a
bundle's config.json checks its architecture name, and that runs when the GUI starts (listing
models), which must not import torch. tests/test_app_startup.py keeps the two in step.
"""

from __future__ import annotations

ARCHITECTURE_NAMES: frozenset[str] = frozenset({"melcnn", "samplecnn"})
