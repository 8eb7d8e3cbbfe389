"""The outside systems, each behind one module: libvirt, libguestfs, qemu-img, ssh, processes, locks, the private libvirtd."""
