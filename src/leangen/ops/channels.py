"""The StyleGAN2 channel-width table, shared by every family built on StyleGAN2's layers (generators and D)."""
from __future__ import annotations


def stylegan2_channels(channel_multiplier: int = 2, channel_base: int = 512, max_channels: int = 512) -> dict[int, int]:
    """Channels per resolution: 512 up to 32, then halving (times the multiplier): 64:256*cm, 128:128*cm, ..."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
             256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    if channel_base == 512 and max_channels == 512:
        return table
    scale = channel_base / 512  # tiny presets shrink every width by the same factor
    return {r: max(8, min(max_channels, int(c * scale))) for r, c in table.items()}
