"""pynet's firewall: its own nftables table (table.py, rules in ruleset.py) and the two accepts
it keeps in Docker's DOCKER-USER chain (docker_user.py)."""

from .table import Firewall

__all__ = ["Firewall"]
