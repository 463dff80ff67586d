"""Polling bookingtime's App API for appointments, which it offers no webhooks for."""
