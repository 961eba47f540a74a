"""The numbers of the two capture file formats (libpcap's magic, pcapng's block types and
options) and what indexing a file gives: where each frame is and its record metadata
(`FrameIndex`), and the interfaces it was captured on (`Interface`). Pure data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

# A record longer than this is damage, not a frame (BIG TCP tops out near 512 KiB).
MAX_CAPLEN = 1 << 24

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
BT_IDB = 1
BT_PB = 2  # obsolete Packet Block
BT_SPB = 3
BT_EPB = 6
FRAME_BLOCKS = frozenset((BT_PB, BT_SPB, BT_EPB))

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
IF_NAME = 2
IF_TSRESOL = 9
IF_TSOFFSET = 14
EPB_FLAGS = 2


@dataclass(frozen=True)
class Interface:
    """One pcapng IDB (or the single implicit interface of a pcap file)."""

    linktype: int
    snaplen: int
    name: str | None = None
    tsresol: int = 6  # if_tsresol as stored: MSB clear = 10^-n s, MSB set = 2^-n s
    tsoffset: int = 0  # seconds added to every timestamp (if_tsoffset)


@dataclass(frozen=True)
class FrameIndex:
    """Where every frame of a file is, and what its record header says."""

    data_off: npt.NDArray[np.int64]  # absolute offset of the frame's first byte
    caplen: npt.NDArray[np.int64]
    origlen: npt.NDArray[np.int64]
    t_ns: npt.NDArray[np.int64]
    linktype: npt.NDArray[np.int32]
    iface: npt.NDArray[np.int32]  # pcapng interface (numbered across sections), -1 for pcap
    direction: npt.NDArray[np.int8]
    interfaces: tuple[Interface, ...] = ()
    comments: dict[int, str] = dataclasses.field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.data_off.shape[0])
