"""Small shared helpers (devices, seeds, atomic files)."""
