"""Publishing: sinks (push to other systems), change events, reminders.

May import engine and everything below it; never service, web or cli.
"""
