"""The guest's network: what `--net` asks for, and the host side that moves frames.

    config.py   `--net none` / `--net user[,hostfwd=tcp:ADDR:PORT-:PORT...]` parsed
                into a NetConfig (QEMU's -netdev user syntax and addresses)
    slirp.py    libslirp (user-mode TCP/IP, as QEMU uses it) through cffi in ABI
                mode: dlopen of libslirp.so.0, no headers needed
    link.py     the link between a machine's virtio-net device and a slirp:
                frames both ways between run slices, host sockets polled, idle
                waits that wake on network activity

The core (native/virtio_net.c) does no I/O; everything here runs on the host
between slices, and every frame it hands the guest is an input that
record/replay logs (chrono.replay).
"""
