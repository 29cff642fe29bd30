"""The OEM side: the MQTT API (envelopes, message handlers) and the link that sends the
bridge's own requests to the OEM firmware and matches their answers."""
