"""Collectors: MQTT in, validated readings out (to the store and the bus), bad input dead-lettered."""
