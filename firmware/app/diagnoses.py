# The diagnosis table: one row per code, kept as data so that the device (app.console,
# app.selftest) and the host (musket.diagnoses, which reads this file with ast.literal_eval)
# share it without a copy. A code seen on a device may carry a detail after ":" (the
# network's reject cause, the sensor's name): "NET_NOCOV:15", "SENSOR_MISSING:sht".
#
# (code, what is wrong, recommended repair, parts to bring)
TABLE = (
    ("NET_NOCOV", "no coverage: the modem finds no cell it may use (EMM cause 15: no suitable "
     "cells in tracking area; 12, 13: area not allowed)",
     "check the antenna and its cable; move the antenna up or out; if the site has no "
     "coverage for this network, fit an external antenna or change carrier",
     "LTE antenna with 3 m cable; SMA adapter"),
    ("NET_REJECT", "the network rejected the registration (see the reject cause)",
     "check the SIM's subscription and roaming with the carrier (cause 3, 6, 7, 8: SIM or "
     "device barred; 11: network not allowed)",
     "spare SIM of the fleet's carrier"),
    ("SIM_MISSING", "no SIM, or the SIM is locked or not read",
     "reseat the SIM; check its contacts; replace it if it is still not read",
     "spare SIM; SIM tray"),
    ("SIM_NODATA", "registered, but the carrier gives no data (SIM paused, data limit, or SMS "
     "only)",
     "check the SIM's state and data plan in the carrier's portal; resume the SIM",
     "none"),
    ("MODEM_HUNG", "the modem does not answer AT commands",
     "power-cycle the board; if it still does not answer, replace the modem board",
     "modem board; ribbon cable"),
    ("SENSOR_MISSING", "a sensor does not answer or is disconnected (unplugged, broken wire)",
     "check the sensor's connector and cable; replace the sensor",
     "temperature sensor (SHT4x) with cable; current clamp; connector kit"),
    ("SENSOR_RANGE", "a sensor reads outside its possible range",
     "check the sensor's wiring and supply; replace the sensor",
     "matching sensor"),
    ("SENSOR_STUCK", "a sensor reads the same value for too long",
     "check the sensor is in place and powered; replace the sensor",
     "matching sensor"),
    ("FLASH_RO", "the flash cannot be written",
     "reflash the firmware; if writes still fail, replace the controller board",
     "controller board"),
    ("BROKER_DOWN", "the link is up but the broker cannot be reached",
     "check the broker's address and the network's firewall; nothing to fix on site if the "
     "service is down",
     "none"),
    ("BROKER_AUTH", "the broker refuses the device's credentials",
     "re-provision the device's credentials (musket provision)",
     "laptop with the provisioning tools"),
    ("COUNTER_STUCK", "uses seen by the sensors are not being counted (the count cannot be "
     "committed)",
     "check the flash (selftest); reflash; the uses wait in memory until then",
     "controller board"),
)


def find(code):
    # The row of a code (with or without its ":detail"); an unknown code gets a row that says
    # so rather than an error.
    base = code.split(":")[0]
    for row in TABLE:
        if row[0] == base:
            return row
    return (base, "unknown code", "update the console's firmware", "none")


def explain(codes):
    # Codes as the console shows them: with what is wrong, the repair and the parts.
    out = []
    for code in codes:
        row = find(code)
        out.append({"code": code, "problem": row[1], "repair": row[2], "parts": row[3]})
    return out
