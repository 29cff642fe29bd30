"""Provisioning functional block (B): booting (B01-B04), variables (B05, B06), reports (B07, B08),
network connection profiles (B09, B10)."""
