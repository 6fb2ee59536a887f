"""The one router of the REST API (/api/v1/). Each app registers its viewsets here."""

from rest_framework.routers import DefaultRouter


class OptionalSlashRouter(DefaultRouter):
    """The seed's paths have no trailing slash; accept both forms."""

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
