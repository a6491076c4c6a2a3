"""Human-readable durations for logs and metric records."""
from __future__ import annotations


def format_time(seconds: float) -> str:
    """``12s``, ``3m 04s``, ``1h 02m 03s``, ``2d 03h 04m`` (StyleGAN's style)."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m {s % 60:02d}s"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h {s % 3600 // 60:02d}m"
