"""Image layouts: channel names and order, recorded in every file we write."""

from __future__ import annotations

from dataclasses import dataclass

from e2ecompress.errors import InputError

IMAGE_SIZE = 125


@dataclass(frozen=True)
class Layout:
    name: str
    channels: tuple[str, ...]

    @property
    def in_chans(self) -> int:
        return len(self.channels)

    def index(self, channel: str) -> int:
        return self.channels.index(channel)


LAYOUTS: dict[str, Layout] = {
    "qg3": Layout("qg3", ("ECAL", "HCAL", "Tracks")),
    "e2e8": Layout("e2e8", ("TrackPT", "TrackD0", "TrackDZ", "ECAL", "HCAL", "PixL1", "PixL2", "PixL3")),
}


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise InputError(None, f"unknown layout {name!r} (known: {', '.join(LAYOUTS)})") from None
