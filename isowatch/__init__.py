"""isowatch: door and temperature watch for households in home isolation."""

__version__ = "0.1.0"
