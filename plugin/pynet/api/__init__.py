"""The protocol edge: decode, call the service, encode. Nothing here touches the kernel."""
