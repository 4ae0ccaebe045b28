"""The SocketCAN error-frame layout (``linux/can/error.h``), defined once for every layer.

Constants only: the class bits of an error frame's ``can_id``, what its payload bytes mean and
the kernel's error-counter thresholds, as docs/can-errors.md §1 lists them with their sources.
Every layer that touches error frames uses this module: capture readers map other tools' error
records into the layout (``candiag.ingest.formats.errormap``), the health package decodes it
(``candiag.health.errorframes``, ``busstate``, ``pcan``) and the simulator produces it
(``candiag.sim.faults``).  It imports nothing, so the lowest layer can use it.

The frame-level flags (``CAN_ERR_FLAG``, ``CAN_EFF_FLAG``, ...) belong to how identifiers are
read and live with the frame model, :mod:`candiag.ingest.frames`.
"""

from __future__ import annotations

# Class bits of an error frame's can_id (CAN_ERR_*), in bit order.
CAN_ERR_TX_TIMEOUT = 0x001
CAN_ERR_LOSTARB = 0x002  # data[0]: bit number
CAN_ERR_CRTL = 0x004  # data[1]: CONTROLLER_FLAGS
CAN_ERR_PROT = 0x008  # data[2]: PROTOCOL_TYPE_FLAGS, data[3]: PROTOCOL_LOCATIONS
CAN_ERR_TRX = 0x010  # data[4]: TRANSCEIVER_CANH | TRANSCEIVER_CANL
CAN_ERR_ACK = 0x020
CAN_ERR_BUSOFF = 0x040
CAN_ERR_BUSERROR = 0x080
CAN_ERR_RESTARTED = 0x100
CAN_ERR_CNT = 0x200  # data[6]: TEC, data[7]: REC

# candiag's name of each class, in bit order (JSON keys, the metric label ``class``).
SOCKETCAN_CLASSES: tuple[str, ...] = (
    "tx_timeout",
    "lost_arbitration",
    "controller",
    "protocol",
    "transceiver",
    "ack",
    "bus_off",
    "bus_error",
    "restarted",
    "counters",
)
CLASS_BIT: dict[str, int] = {name: 1 << i for i, name in enumerate(SOCKETCAN_CLASSES)}
CAN_ERR_CLASS_MASK = (1 << len(SOCKETCAN_CLASSES)) - 1

# data[1] for CAN_ERR_CRTL: bit flags (CAN_ERR_CRTL_*; 0x00 is "unspecified").
CONTROLLER_FLAGS: dict[str, int] = {
    "rx_overflow": 0x01,
    "tx_overflow": 0x02,
    "rx_warning": 0x04,
    "tx_warning": 0x08,
    "rx_passive": 0x10,
    "tx_passive": 0x20,
    "active": 0x40,
}
# data[2] for CAN_ERR_PROT: bit flags (CAN_ERR_PROT_*; 0x00 is "unspecified").
PROTOCOL_TYPE_FLAGS: dict[str, int] = {
    "bit": 0x01,
    "form": 0x02,
    "stuff": 0x04,
    "bit0": 0x08,
    "bit1": 0x10,
    "overload": 0x20,
    "active": 0x40,
    "tx": 0x80,
}
# data[3] for CAN_ERR_PROT: one value (CAN_ERR_PROT_LOC_*).  These are the SJA1000
# error-code-capture segment numbers; the four marked "sja1000" are segments the kernel
# table does not name but PEAK reports (PCAN-Basic "Error Frames"), see health/pcan.py.
PROTOCOL_LOCATIONS: dict[int, str] = {
    0x00: "unspec",
    0x02: "id28_21",
    0x03: "sof",
    0x04: "srtr",
    0x05: "ide",
    0x06: "id20_18",
    0x07: "id17_13",
    0x08: "crc_seq",
    0x09: "res0",
    0x0A: "data",
    0x0B: "dlc",
    0x0C: "rtr",
    0x0D: "res1",
    0x0E: "id04_00",
    0x0F: "id12_05",
    0x11: "active_error_flag",  # sja1000
    0x12: "interm",
    0x13: "tolerate_dominant",  # sja1000
    0x17: "error_delimiter",  # sja1000
    0x18: "crc_del",
    0x19: "ack",
    0x1A: "eof",
    0x1B: "ack_del",
    0x1C: "overload_flag",  # sja1000
}
PROTOCOL_LOCATION: dict[str, int] = {name: value for value, name in PROTOCOL_LOCATIONS.items()}
# data[4] for CAN_ERR_TRX: CANH state in the low nibble, CANL state in the high nibble.
TRANSCEIVER_CANH: dict[int, str] = {
    0x04: "canh_no_wire",
    0x05: "canh_short_to_bat",
    0x06: "canh_short_to_vcc",
    0x07: "canh_short_to_gnd",
}
TRANSCEIVER_CANL: dict[int, str] = {
    0x40: "canl_no_wire",
    0x50: "canl_short_to_bat",
    0x60: "canl_short_to_vcc",
    0x70: "canl_short_to_gnd",
    0x80: "canl_short_to_canh",
}

# Error-counter thresholds (CAN_ERROR_WARNING_THRESHOLD, CAN_ERROR_PASSIVE_THRESHOLD,
# CAN_BUS_OFF_THRESHOLD): 0-95 error-active, 96-127 warning, 128-255 passive, 256 bus-off.
ERROR_WARNING_THRESHOLD = 96
ERROR_PASSIVE_THRESHOLD = 128
BUS_OFF_THRESHOLD = 256
