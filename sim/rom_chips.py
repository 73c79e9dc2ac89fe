"""Each chip family's ROM as data: what it shows over the serial protocol (`ChipRom`), the
ESP32 and the ESP32-S3, and the MAC a virtual device gets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ChipRom:
    """What one chip family's ROM shows over the serial protocol: registers that identify it,
    where its eFuses and SPI flash controller sit, how many status bytes its ROM sends, and
    whether it answers GET_SECURITY_INFO (with the chip id newer chips are detected by)."""

    name: str
    registers: dict[int, int]
    efuse_base: int
    spi_base: int
    spi_usr2: int
    spi_w0: int
    rom_status_bytes: int
    mac_words: Callable[[bytes], dict[int, int]]
    iram: tuple[int, int]  # [start, end) of internal instruction RAM, where code can run
    chip_id: int | None = None  # None: the ROM has no GET_SECURITY_INFO
    eco_version: int = 0  # the last word of GET_SECURITY_INFO's answer


def _crc8_maxim(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8C if crc & 1 else crc >> 1
    return crc


def _esp32_mac_words(mac: bytes) -> dict[int, int]:
    # BLK0 words 1 and 2: MAC bytes 2..5, then bytes 0..1 with the eFuse CRC8 above them.
    return {
        0x3FF5A004: int.from_bytes(mac[2:6], "big"),
        0x3FF5A008: (_crc8_maxim(mac[::-1]) << 16) | int.from_bytes(mac[0:2], "big"),
    }


def _esp32s3_mac_words(mac: bytes) -> dict[int, int]:
    # BLOCK1 (EFUSE_RD_MAC_SPI_SYS_0/1): MAC bytes 2..5, then bytes 0..1 (SPI pad config
    # above them is zero: the default pins). No CRC: BLOCK1 has Reed-Solomon coding instead.
    return {
        0x60007044: int.from_bytes(mac[2:6], "big"),
        0x60007048: int.from_bytes(mac[0:2], "big"),
    }


# ESP32-D0WD-V3, revision v3.1 (as on an ESP32-WROVER-E), 40 MHz crystal.
ESP32 = ChipRom(
    name="esp32",
    registers={
        0x40001000: 0x00F01D83,  # chip-detect magic word
        0x3FF5A00C: (1 << 15) | (1 << 9),  # BLK0 word 3: revision bit 0, package D0WD
        0x3FF5A010: 200,  # word 4: CK8M frequency calibration
        0x3FF5A014: (1 << 20) | (1 << 24),  # word 5: revision bit 1, minor revision 1
        0x3FF6607C: 1 << 31,  # APB_CTL_DATE: revision bit 2 -> v3
        0x3FF40014: 347,  # UART_CLKDIV at 115200 baud from 40 MHz
        0x3FF5F06C: 512 << 7,  # RTC calibration: 512 * 15625 * 200 / 40 = 40 MHz
    },
    efuse_base=0x3FF5A000,
    spi_base=0x3FF42000, spi_usr2=0x24, spi_w0=0x80,
    rom_status_bytes=4,
    mac_words=_esp32_mac_words,
    iram=(0x40070000, 0x400C0000),
)

# ESP32-S3 (QFN56), revision v0.2, as on an ESP32-S3-WROOM-1-N8: flash in the module, not in
# the chip package, so no embedded flash or PSRAM in the eFuses; fixed 40 MHz crystal. The
# ROM loader listens on UART0 (the board's USB-UART bridge), not on the USB-Serial/JTAG.
ESP32S3 = ChipRom(
    name="esp32s3",
    registers={
        0x40001000: 0x00000009,  # chip-detect magic word
        0x60007050: 2 << 18,  # BLOCK1 word 3: wafer minor version (low bits) 2, package 0
        0x60007058: 0,  # BLOCK1 word 5: wafer major version 0, minor high bit 0
        0x6000706C: 1,  # BLOCK2 word 4: block version major 1 (calibration burned)
        0x3FCEF14C: 0,  # UARTDEV_BUF_NO: the loader's port, 0 = UART0 (3 USB-OTG, 4 USB-JTAG)
    },
    efuse_base=0x60007000,
    spi_base=0x60002000, spi_usr2=0x20, spi_w0=0x58,
    rom_status_bytes=4,
    mac_words=_esp32s3_mac_words,
    iram=(0x40370000, 0x403E0000),
    chip_id=9,
)
CHIPS = {"esp32": ESP32, "esp32s3": ESP32S3}
MAC_OUI = b"\x24\x0a\xc4"  # Espressif's, as on the virtual device's machine.unique_id()


def device_mac(suffix: bytes) -> bytes:
    return MAC_OUI + suffix
