"""Qt item models over the library facade (no widgets here)."""
