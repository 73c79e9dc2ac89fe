# The SHT4x / SHT3x driver is in app.sensors with the other drivers (one module costs less
# heap than several); this name stays for importers.
from app.sensors import Sht, crc8  # noqa: F401
