"""What every part shares: settings, the database, the event bus, phone numbers, the
working-time calendar and accounts; plus `hotline.cli`, the one entry point."""
