"""The driver's logic, by concern: state (shared), networks, endpoints, published ports,
DHCP leases and the IPAM driver, reconcile; driver.py puts them together."""
