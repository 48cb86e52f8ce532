"""Microsoft Entra ID connector: users, devices and subscribed SKUs from Microsoft Graph."""
