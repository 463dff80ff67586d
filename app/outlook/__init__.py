"""Outlook → calbridge: Graph subscriptions and their notifications, calendarView delta sync of
each mapped mailbox, echo detection of calbridge's own writes, and busy blocks."""
