"""Jamf Pro computers and mobile devices."""
