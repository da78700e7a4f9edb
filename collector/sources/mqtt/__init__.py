"""Telegraf on Windows hosts → MQTT broker → hciwatch (push source and parser)."""
