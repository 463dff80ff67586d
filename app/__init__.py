"""calbridge: push-driven sync between bookingtime and Microsoft 365 calendars."""

__version__ = "0.1.0"
