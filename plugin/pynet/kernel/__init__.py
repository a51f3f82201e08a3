"""The only modules that import pyroute2 or nftables. They know nothing of Docker."""
