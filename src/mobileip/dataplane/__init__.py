"""The data plane: tunnel codecs, tunnel backends and ARP duties of the active Home Agent."""
