"""pynet: a Docker network driver (libnetwork remote-driver protocol)."""

__version__ = "0.1.0"
