"""ServiceNow sink: golden assets as CMDB CIs through the Identification and Reconciliation API."""
