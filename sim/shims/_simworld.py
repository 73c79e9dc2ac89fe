# What the virtual board is wired to. Peripheral shims register here and sim models (sensors,
# the modem) attach to them: a model drives input pins, answers on a UART, or sits on the I2C
# bus at an address. With nothing attached a pin floats to its pull, a UART stays silent and
# the I2C bus has no devices, as on a bare board.

pins = {}  # pin number -> machine.Pin
uarts = {}  # uart id -> machine.UART
i2c_devices = {}  # (bus id, address) -> model with read(reg, n) / write(reg, data)
adc_levels = {}  # pin number -> microvolts, set by sensor models
uart_peers = {}  # uart id -> model with receive(data) called on every firmware write
pin_watchers = {}  # pin number -> list of callback(level) when the firmware drives the pin


driven_levels = {}  # pin number -> level a model drives, kept for pins made later


def drive_pin(number, level):
    # A model drives an input pin: updates its level and fires the firmware's IRQ.
    driven_levels[number] = 1 if level else 0
    pin = pins.get(number)
    if pin is not None:
        pin._external(level)


def set_adc(number, microvolts):
    adc_levels[number] = microvolts


def attach_i2c(bus, address, model):
    i2c_devices[(bus, address)] = model


def attach_uart(uart_id, model):
    uart_peers[uart_id] = model


def uart_feed(uart_id, data):
    # A model sends bytes to the firmware on a UART.
    uart = uarts.get(uart_id)
    if uart is not None:
        uart._receive(data)


def watch_pin(number, callback):
    pin_watchers.setdefault(number, []).append(callback)
