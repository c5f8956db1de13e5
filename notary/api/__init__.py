"""HTTP API of the notary (FastAPI): ``create_app`` builds it around a NotaryService."""

from notary.api.main import create_app

__all__ = ["create_app"]
