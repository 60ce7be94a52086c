"""simswitch's Event Socket server: connections, subscriptions, events and API commands."""
