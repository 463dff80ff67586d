"""Microsoft Graph change notifications: the notification and lifecycle intake, and the
subscriptions (one per mapped mailbox) that make Graph send them, with their upkeep."""
