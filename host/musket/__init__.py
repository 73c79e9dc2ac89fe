"""musket: build, flash, provision, simulate and run cellular IoT devices."""

__version__ = "0.1.0"
