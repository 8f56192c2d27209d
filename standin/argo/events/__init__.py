"""Argo Events v1.9: the webhook EventSource (webhook) and Sensor evaluation (sensors)."""
