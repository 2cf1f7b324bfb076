"""The machine: board facts, device tree, guest loading and the native core's Python face."""
