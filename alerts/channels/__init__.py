"""Notification channels: SMS (Alibaba Cloud, Tencent Cloud), Web Push, DingTalk and WeCom group
robots, a signed webhook, and the live feed. See docs/NOTIFICATIONS.md.
"""
