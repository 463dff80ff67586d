"""Outlook busy time: calendarView delta runs of each mapped mailbox, telling calbridge's own
events from a person's, and the busy blocks bookingtime reads."""
