"""Notification channels behind one `send` (see base.py); build them with `build_channels`."""
