"""What every command shares: printing a UserError as one message, and finding a config by name."""
