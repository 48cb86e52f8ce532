"""The long-running service (`serve`): scheduler, webhooks, metrics, health.

May import publish, insight, audit, engine and below; never web or cli.
"""
