"""Ready-made guests: download, build and cache them; boot them by name.

    fetch_guest("debian", progress=...)   build ~/.cache/chrono/guests/debian (or reuse it)
    list_guests()                         what is cached
    guest_spec("debian", ram_size=...)    the GuestSpec `chrono run debian` boots
    guest_store("debian-full")            its own snapshot store (`run debian-full --from booted`)

Modules, one job each: cpio (newc archive writer), kmod (kernel module dependencies),
initramfs (the /init script and archive), apt (private apt state), deb (dpkg-deb),
ext4 (mkfs.ext4), manifest (guest.json), cache (cache folders, atomic builds),
debian (the Debian recipe), catalog (names -> recipes and cached guests),
progress (progress callbacks), tools (host programs and their errors).
"""
from chrono.guests.catalog import (RECIPES, CachedGuest, FetchResult, fetch_guest, guest_spec,
                                   guest_store, list_guests)
from chrono.guests.progress import ProgressEvent, ProgressFn, silent

__all__ = ["RECIPES", "CachedGuest", "FetchResult", "ProgressEvent", "ProgressFn", "fetch_guest",
           "guest_spec", "guest_store", "list_guests", "silent"]
