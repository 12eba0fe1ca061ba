"""Version of the pydotcompute-widgets distribution."""

__version__ = "0.3.0"
