"""Alerts: detections become alarms (one open per kind and subject), alarms become routed tickets."""
