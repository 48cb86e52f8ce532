"""Google Workspace connector: Directory users, ChromeOS devices and mobile devices (Admin SDK)."""
