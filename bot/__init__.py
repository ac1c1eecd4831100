"""Crieur: community news feeds relayed into Matrix rooms."""

from __future__ import annotations

__version__ = "0.1.0"
HOMEPAGE = "https://crieur.example.org"
USER_AGENT = f"Crieur/{__version__} (+{HOMEPAGE})"
