"""The `chrono disk` commands: what to do with a disk image outside a run.

Thin, like chrono.cli: parse options, call chrono.core.overlay, print.
"""
from __future__ import annotations


import click

from chrono.cli import main
from chrono.cliparams import PathParam


@main.group("disk")
def disk_group():
    """Disk images: apply guest writes saved when --commit could not write them."""


@disk_group.command("commit")
@click.argument("overlay", type=PathParam(), metavar="OVERLAY")
@click.argument("image", type=PathParam(), required=False, metavar="[IMAGE]")
def disk_commit(overlay, image):
    """Write the guest writes saved in OVERLAY (an IMAGE.chrono-overlay file)
    into the image they were meant for, or into IMAGE; then remove OVERLAY.

    `chrono run --disk IMAGE --commit` saves such a file when it cannot write
    the guest's writes back at exit (the disk was full, the image was removed
    or made read-only meanwhile).  The file is checked (checksum, the image's
    size) before anything is written.
    """
    from chrono.core.overlay import apply_overlay

    target, written = apply_overlay(overlay, image)
    click.echo(f"committed {written:,} bytes of guest writes from {overlay} to {target}; "
               f"removed {overlay}")
