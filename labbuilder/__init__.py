"""labbuilder: the physical layer of hands-on training labs on libvirt hosts."""

__version__ = "0.1.0"
