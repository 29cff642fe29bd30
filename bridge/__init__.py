"""ocpp-bridge: the charger-side OCPP 2.0.1 stack that talks to the OEM firmware over MQTT."""

__version__ = "0.1.0"
