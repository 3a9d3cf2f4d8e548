"""Small trained sample models, their torch definitions and the digits data (see README.md)."""
