# The ADC drivers are in app.sensors, with the other drivers (one module costs less heap than
# several); this name stays for importers.
from app.sensors import Current, Supply  # noqa: F401
