"""The package version, in one place (setup.cfg, the banner, health and HAR read it)."""

__version__ = "0.1.0"
