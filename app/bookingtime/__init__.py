"""Inbound from bookingtime: the signed appointment webhook."""
