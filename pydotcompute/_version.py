"""Version of the pydotcompute distribution."""

__version__ = "0.3.0"
