# The frames between the virtual device and the models on the host (musket_sim.coupling).
# Read by both ends: this module is the one place the format is written down.
#
# Beside the socket, the clock file: 8 bytes, the device's clock as it last moved, written in
# place at every step the device takes on its own, so that the host knows how far a boot got
# even when its process dies without a word (and no frame is spent on it).
#
# A frame is its type (one byte), the length of what follows (two bytes, little-endian) and
# that many bytes. Numbers inside are little-endian: times 8 bytes (virtual microseconds),
# ids and levels 1, registers and counts 2, values 4. Every frame from the device starts with
# the device's clock, which the models' clock follows.

HEADER = 3
MAX_PAYLOAD = 4096  # longest frame the device takes in; longer deliveries are split
NO_REGISTER = 0xFFFF  # an I2C transfer without a memory address

# device -> host. A read (I2C_READ, ADC_READ, I2C_SCAN) leaves the models' schedule as it was,
# so it does not end the quiet time the host announced (see TIME).
HELLO = 0x68  # "h" now, reset cause: a boot starts; answered with deliveries, then TIME
IDLE = 0x69  # "i" now, target, commit: answered with deliveries, then TIME
UART_WRITE = 0x77  # "w" now, uart, data: answered with QUIET, which the device reads later
UART_OPEN = 0x6F  # "o" now, uart, baud
PIN_SET = 0x70  # "p" now, pin, level: answered with TIME (now) and what the models did
I2C_READ = 0x72  # "r" now, bus, address, register, count: answered with REPLY
I2C_WRITE = 0x78  # "x" now, bus, address, register, data: answered with REPLY
I2C_SCAN = 0x73  # "s" now, bus: answered with REPLY (the addresses)
# "a" now, pin: answered with REPLY: the level at the pin (microvolts, 4 bytes), until when it
# holds (8 bytes) and whether the chip's conversion noise applies to it (1 byte)
ADC_READ = 0x61

# host -> device
UART_DATA = 0x55  # "U" uart, data
PIN_LEVEL = 0x50  # "P" pin, level
PIN_PULSES = 0x4E  # "N" pin, count (2 bytes): short high pulses on a pin resting low
# "T" the clock the device moves to, the count of delivery frames that follow, and until when
# the models have nothing for the device unless it sends them something (it need not ask
# before then)
TIME = 0x54
# "R" status (0 ok, else an errno), data; for an I2C address with no device on the bus at all,
# status 19 (ENODEV) and the byte NO_DEVICE, which the device may keep for the rest of the boot
REPLY = 0x52
NO_DEVICE = 0xFF
# "Q" until when the models are quiet now (as in TIME): the answer to a UART write, sent at
# once and read by the device when it next needs to know, so a write costs no round trip
QUIET = 0x51
FAILURE = 0x46  # "F" text: the models failed; the run stops and says why
