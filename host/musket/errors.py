class MusketError(Exception):
    """Root of every error musket raises."""
