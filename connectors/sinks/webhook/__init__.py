"""Webhook sink: change events POSTed as signed JSON batches."""
